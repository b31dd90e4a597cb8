"""One polled batch into Postgres, inside the caller's transaction.

Exactly once in effect: every event row is inserted with ``ON CONFLICT DO NOTHING`` on its
id (impressions by ``request_id``, outcomes by ``event_id``, dead letters by topic,
partition and offset), and only the rows that were really inserted go on to attribution.
A batch redelivered after a crash (the database committed, the offsets did not) therefore
changes nothing. Attribution itself is :mod:`learner.ingest.attribution`; this module loads
the state it needs, applies it in event-time order and writes back what changed.

An outcome *held* for a request not read yet (:func:`learner.ingest.attribution.waits`) is just
a stored outcome with ``attributed_request_id`` NULL whose ``request_id`` is in no impression
row: nothing else marks it, so a restarted worker finds it held exactly as it was left.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter

import orjson
from sqlalchemy import ARRAY, Connection, String, any_, bindparam, exists, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert

from learner.ingest.attribution import Group, PendingOutcome, apply_batch, closes_at
from schemas.events import Impression, Outcome
from schemas.tables import DeadLetter, ImpressionRow, OutcomeRow, RewardGroup

IMPRESSIONS, OUTCOMES, GROUPS = ImpressionRow.__table__, OutcomeRow.__table__, RewardGroup.__table__
DEAD = DeadLetter.__table__
_rank = attrgetter("rank")


@dataclass(frozen=True)
class BadMessage:
    topic: str
    partition: int
    offset: int
    payload: bytes
    reason: str


@dataclass
class BatchResult:
    impressions: int = 0  # new rows (duplicates excluded)
    outcomes: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    credited: int = 0  # outcomes that landed on a served list
    closed: int = 0
    touched_groups: set[str] = field(default_factory=set)


def _first_by(events, key):
    seen = {}
    for e in events:
        seen.setdefault(getattr(e, key), e)
    return list(seen.values())


def _recordset(conn: Connection, table, columns) -> str:
    """``jsonb_to_recordset(:rows) AS x(col type, ...)``: a whole batch travels as one JSON parameter.

    Far cheaper than a multi-row VALUES with thousands of placeholders, which psycopg would
    re-parse for every batch size it meets."""
    spec = ", ".join(f'"{c}" {table.c[c].type.compile(dialect=conn.dialect)}' for c in columns)
    return f"jsonb_to_recordset(CAST(:rows AS jsonb)) AS x({spec})"


def _json(rows: list[dict]) -> str:
    # orjson: a batch's rows are most of the worker's encoding time, and json.dumps was ~8x slower here.
    # It writes aware datetimes as RFC 3339, which Postgres reads back exactly.
    return orjson.dumps(rows).decode()


def _insert(conn: Connection, table, rows: list[dict], key: str | None = None) -> set[str]:
    """Insert ``rows``; with ``key``, skip the ones whose key exists and return the keys really inserted."""
    if not rows:
        return set()
    cols = list(rows[0])
    names = ", ".join(f'"{c}"' for c in cols)
    sql = f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {_recordset(conn, table, cols)}"
    if key is not None:
        sql += f' ON CONFLICT ("{key}") DO NOTHING RETURNING "{key}"'
    result = conn.execute(text(sql), {"rows": _json(rows)})
    return set(result.scalars().all()) if key is not None else set()


def _update(conn: Connection, table, rows: list[dict], key: str, extra: str = "") -> None:
    """``UPDATE table SET col = x.col ... FROM rows x WHERE table.key = x.key`` for every row at once."""
    if not rows:
        return
    cols = list(rows[0])
    sets = ", ".join([f'"{c}" = x."{c}"' for c in cols if c != key] + ([extra] if extra else []))
    sql = f'UPDATE {table.name} SET {sets} FROM {_recordset(conn, table, cols)} WHERE {table.name}."{key}" = x."{key}"'
    conn.execute(text(sql), {"rows": _json(rows)})


def _among(column, values: set[str]):
    """``column = ANY(:array)``: one array parameter. ``IN (...)`` would send a placeholder per value, and a
    statement that psycopg must parse anew for every batch (the query text changes with the count)."""
    return column == any_(bindparam(None, sorted(values), type_=ARRAY(String)))


def _impression_row(e: Impression) -> dict:
    items = [{"item_id": i.item_id, "score": i.score, "rank": i.rank} for i in sorted(e.items, key=_rank)]
    return dict(
        request_id=e.request_id, user_id=e.user_id, segment=e.segment, history=list(e.history), items=items,
        model_version=e.model_version, schema_version=e.schema_version, ts=e.ts, catalog_version=e.catalog_version,
    )  # fmt: skip


def _outcome_row(e: Outcome) -> dict:
    return dict(
        event_id=e.event_id, user_id=e.user_id, request_id=e.request_id, item_id=e.item_id, type=e.type,
        schema_version=e.schema_version, ts=e.ts, attributed_request_id=None,
    )  # fmt: skip


def _pending(e: Outcome | OutcomeRow) -> PendingOutcome:
    return PendingOutcome(e.event_id, e.user_id, e.request_id, e.item_id, e.type, e.ts)


def _load_groups(conn: Connection, users: set[str]) -> dict[str, list[Group]]:
    """The users' open groups, locked (in a fixed order, so two workers cannot deadlock)."""
    out: dict[str, list[Group]] = defaultdict(list)
    if not users:
        return out
    c = GROUPS.c
    rows = conn.execute(
        select(c.request_id, c.user_id, c["items"], c.rewards, c.organic_positives, c.opened_at, c.closes_at)
        .where(_among(c.user_id, users), c.window_open)
        .order_by(c.request_id)
        .with_for_update()
    )
    for r in rows:
        out[r.user_id].append(Group(r.request_id, r.user_id, list(r.items), list(r.rewards),
                                    list(r.organic_positives), r.opened_at, r.closes_at))  # fmt: skip
    return out


_OUTCOME_COLUMNS = ("event_id", "user_id", "request_id", "item_id", "type", "ts")


def _load_pending(conn: Connection, impressions: list[Impression], window_s: int, skip: set[str]):
    """Unattributed outcomes stored earlier that a new impression may take: those its window may cover,
    and those that name it (held for it)."""
    out: dict[str, list[PendingOutcome]] = defaultdict(list)
    if not impressions:
        return out
    c = OUTCOMES.c
    lo = min(e.ts for e in impressions)
    hi = max(e.ts for e in impressions) + timedelta(seconds=window_s)
    rows = conn.execute(
        select(*(c[k] for k in _OUTCOME_COLUMNS)).where(
            _among(c.user_id, {e.user_id for e in impressions}),
            c.attributed_request_id.is_(None),
            or_((c.ts >= lo) & (c.ts < hi), _among(c.request_id, {e.request_id for e in impressions})),
        )  # fmt: skip
    )
    for r in rows:
        if r.event_id not in skip:
            out[r.user_id].append(_pending(r))
    return out


def _unread(o):
    """SQL: the outcome names a request whose impression is not stored."""
    i = IMPRESSIONS.c
    return o.request_id.is_not(None) & ~exists().where(i.request_id == o.request_id)


def _load_released(conn: Connection, after: datetime | None, before: datetime | None, window_s: int, skip: set[str]):
    """Held outcomes whose window passed in this batch: ``after < ts + window <= before``."""
    if before is None:
        return []
    c, window = OUTCOMES.c, timedelta(seconds=window_s)
    stmt = select(*(c[k] for k in _OUTCOME_COLUMNS)).where(
        c.attributed_request_id.is_(None), _unread(c), c.ts <= before - window
    )
    if after is not None:
        if after >= before:
            return []
        stmt = stmt.where(c.ts > after - window)
    return [_pending(r) for r in conn.execute(stmt) if r.event_id not in skip]


def _seen_before(conn: Connection, names: set[str], fresh: set[str]) -> set[str]:
    """Of the request ids ``names``, those whose impression was stored before this batch."""
    if not names:
        return set()
    i = IMPRESSIONS.c
    stored = conn.execute(select(i.request_id).where(_among(i.request_id, names))).scalars().all()
    return set(stored) - fresh


def write_batch(
    conn: Connection,
    impressions: list[Impression],
    outcomes: list[Outcome],
    bad: list[BadMessage],
    weights: dict[str, float],
    window_s: int,
    close_before: datetime | None,
    closed_before: datetime | None = None,
) -> BatchResult:
    """Store one batch and apply it to the reward groups; closes groups with ``closes_at <= close_before``.

    ``closed_before`` is the ``close_before`` of the previous batch: held outcomes with
    ``closed_before < ts + window <= close_before`` are released to the fallback rule now (``None``:
    every held outcome with ``ts + window <= close_before``)."""
    result = BatchResult(dead_letters=_dead_letters(conn, bad))
    n_in = len(impressions) + len(outcomes)
    impressions, outcomes = _store_new(conn, impressions, outcomes)
    result.impressions, result.outcomes = len(impressions), len(outcomes)
    result.duplicates = n_in - len(impressions) - len(outcomes)

    batch = [_pending(e) for e in outcomes]
    released = _load_released(conn, closed_before, close_before, window_s, {o.event_id for o in batch})
    users = {e.user_id for e in impressions} | {o.user_id for o in batch} | {o.user_id for o in released}
    groups = _load_groups(conn, users)
    pending = _load_pending(conn, impressions, window_s, {o.event_id for o in batch + released})
    fresh_ids = {e.request_id for e in impressions}
    names = {o.request_id for o in [*batch, *released, *(p for ps in pending.values() for p in ps)] if o.request_id}
    seen = _seen_before(conn, names, fresh_ids)
    new_groups = [(e, _group(e, window_s)) for e in impressions]
    credited = apply_batch(groups, pending, [g for _, g in new_groups], batch + released, weights, seen,
                           close_before, window_s)  # fmt: skip
    result.touched_groups = _write_back(conn, groups, new_groups, credited)
    result.credited = len(credited)
    if close_before is not None:
        result.closed = _close(conn, close_before, window_s)
    return result


def _group(e: Impression, window_s: int) -> Group:
    items = [i.item_id for i in sorted(e.items, key=lambda i: i.rank)]
    return Group(e.request_id, e.user_id, items, [0.0] * len(items), [], e.ts, closes_at(e.ts, window_s))


def _close(conn: Connection, close_before: datetime, window_s: int) -> int:
    """Close the open groups with ``closes_at <= close_before``, except those a still held outcome of their
    user lies in the window of (its fallback may land there once its own window passes)."""
    c, o = GROUPS.c, OUTCOMES.c
    waiting = select(o.event_id).where(
        o.user_id == c.user_id,
        o.attributed_request_id.is_(None),
        o.ts >= c.opened_at,
        o.ts < c.closes_at,
        o.ts > close_before - timedelta(seconds=window_s),
        _unread(o),
    )  # fmt: skip
    closed = conn.execute(
        update(GROUPS)
        .where(c.window_open, c.closes_at <= close_before, ~waiting.exists())
        .values(window_open=False, closed_at=func.now(), updated_at=func.now())
        .returning(c.request_id)
    )
    return len(closed.all())


def _dead_letters(conn: Connection, bad: list[BadMessage]) -> int:
    if not bad:
        return 0
    rows = [dict(topic=b.topic, partition=b.partition, offset=b.offset, payload=b.payload, reason=b.reason)
            for b in bad]  # fmt: skip
    stmt = insert(DEAD).on_conflict_do_nothing(constraint="uq_dead_letters_source").returning(DEAD.c.id)
    return len(conn.execute(stmt, rows).scalars().all())


def _store_new(conn: Connection, impressions: list[Impression], outcomes: list[Outcome]):
    """Insert the events; return only those not stored before (in this batch or an earlier one)."""
    impressions, outcomes = _first_by(impressions, "request_id"), _first_by(outcomes, "event_id")
    new_imp = _insert(conn, IMPRESSIONS, [_impression_row(e) for e in impressions], "request_id")
    new_out = _insert(conn, OUTCOMES, [_outcome_row(e) for e in outcomes], "event_id")
    return [e for e in impressions if e.request_id in new_imp], [e for e in outcomes if e.event_id in new_out]


def _write_back(conn: Connection, groups, new_groups, credited) -> set[str]:
    """Insert the new groups, update the changed ones and mark the credited outcomes; returns the groups touched."""
    fresh = {g.request_id for _, g in new_groups}
    rows = [
        dict(request_id=g.request_id, user_id=g.user_id, segment=e.segment, model_version=e.model_version,
             history=list(e.history), items=g.items, rewards=g.rewards, organic_positives=g.organic,
             all_zero=g.all_zero, window_open=True, opened_at=g.opened_at, closes_at=g.closes_at)
        for e, g in new_groups
    ]  # fmt: skip
    _insert(conn, GROUPS, rows)
    dirty = [g for gs in groups.values() for g in gs if g.dirty and g.request_id not in fresh]
    rows = [dict(request_id=g.request_id, rewards=g.rewards, organic_positives=g.organic, all_zero=g.all_zero)
            for g in dirty]  # fmt: skip
    _update(conn, GROUPS, rows, "request_id", extra="updated_at = now()")
    _update(conn, OUTCOMES, [dict(event_id=k, attributed_request_id=v) for k, v in credited.items()], "event_id")
    return fresh | {g.request_id for g in dirty}


def refresh_statistics(conn: Connection) -> None:
    """``ANALYZE`` the tables the worker looks up. While they grow fast from empty (a first backfill, a
    replay), autovacuum's statistics lag behind, and the planner then scans all of ``reward_groups`` for a
    batch's users: 20 ms a batch at 86k groups instead of 2.5."""
    for table in (IMPRESSIONS, OUTCOMES, GROUPS):
        conn.execute(text(f"ANALYZE {table.name}"))
