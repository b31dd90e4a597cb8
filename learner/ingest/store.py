"""One polled batch into Postgres, inside the caller's transaction.

Exactly once in effect: every event row is inserted with ``ON CONFLICT DO NOTHING`` on its
id (impressions by ``request_id``, outcomes by ``event_id``, dead letters by topic,
partition and offset), and only the rows that were really inserted go on to attribution.
A batch redelivered after a crash (the database committed, the offsets did not) therefore
changes nothing. Attribution itself is :mod:`learner.ingest.attribution`; this module loads
the state it needs, applies it in event-time order and writes back what changed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.dialects.postgresql import insert

from learner.ingest.attribution import Group, PendingOutcome, attribute, catch_up, closes_at
from schemas.events import Impression, Outcome
from schemas.tables import DeadLetter, ImpressionRow, OutcomeRow, RewardGroup

IMPRESSIONS, OUTCOMES, GROUPS = ImpressionRow.__table__, OutcomeRow.__table__, RewardGroup.__table__
DEAD = DeadLetter.__table__


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
    return json.dumps(rows, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


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


def _impression_row(e: Impression) -> dict:
    items = [i.model_dump() for i in sorted(e.items, key=lambda i: i.rank)]
    return dict(
        request_id=e.request_id, user_id=e.user_id, segment=e.segment, history=list(e.history), items=items,
        model_version=e.model_version, schema_version=e.schema_version, ts=e.ts,
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
        .where(c.user_id.in_(sorted(users)), c.window_open)
        .order_by(c.request_id)
        .with_for_update()
    )
    for r in rows:
        out[r.user_id].append(Group(r.request_id, r.user_id, list(r.items), list(r.rewards),
                                    list(r.organic_positives), r.opened_at, r.closes_at))  # fmt: skip
    return out


def _load_pending(conn: Connection, impressions: list[Impression], window_s: int, skip: set[str]):
    """Unattributed outcomes stored earlier that a new impression's window may cover."""
    out: dict[str, list[PendingOutcome]] = defaultdict(list)
    if not impressions:
        return out
    c = OUTCOMES.c
    lo = min(e.ts for e in impressions)
    hi = max(e.ts for e in impressions) + timedelta(seconds=window_s)
    rows = conn.execute(
        select(c.event_id, c.user_id, c.request_id, c.item_id, c.type, c.ts).where(
            c.user_id.in_(sorted({e.user_id for e in impressions})),
            c.attributed_request_id.is_(None),
            c.ts >= lo,
            c.ts < hi,
        )  # fmt: skip
    )
    for r in rows:
        if r.event_id not in skip:
            out[r.user_id].append(_pending(r))
    return out


def write_batch(
    conn: Connection,
    impressions: list[Impression],
    outcomes: list[Outcome],
    bad: list[BadMessage],
    weights: dict[str, float],
    window_s: int,
    close_before: datetime | None,
) -> BatchResult:
    """Store one batch and apply it to the reward groups; closes groups with ``closes_at <= close_before``."""
    result = BatchResult(dead_letters=_dead_letters(conn, bad))
    n_in = len(impressions) + len(outcomes)
    impressions, outcomes = _store_new(conn, impressions, outcomes)
    result.impressions, result.outcomes = len(impressions), len(outcomes)
    result.duplicates = n_in - len(impressions) - len(outcomes)

    groups = _load_groups(conn, {e.user_id for e in impressions} | {e.user_id for e in outcomes})
    pending = _load_pending(conn, impressions, window_s, {e.event_id for e in outcomes})
    new_groups, credited = _apply(groups, pending, impressions, outcomes, weights, window_s)
    result.touched_groups = _write_back(conn, groups, new_groups, credited)
    result.credited = len(credited)
    if close_before is not None:
        c = GROUPS.c
        closed = conn.execute(
            update(GROUPS)
            .where(c.window_open, c.closes_at <= close_before)
            .values(window_open=False, closed_at=func.now(), updated_at=func.now())
            .returning(c.request_id)
        )
        result.closed = len(closed.all())
    return result


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


def _apply(groups, pending, impressions, outcomes, weights, window_s):
    """Attribution over the batch in event-time order (an impression before an outcome of the same instant).

    Returns the new groups (with their impressions) and ``{event_id: request_id}`` of the credited outcomes."""
    new_groups: list[tuple[Impression, Group]] = []
    credited: dict[str, str] = {}
    events = sorted([(e.ts, 0, e.request_id, e) for e in impressions] + [(e.ts, 1, e.event_id, e) for e in outcomes],
                    key=lambda t: t[:3])  # fmt: skip
    for _, kind, _, e in events:
        user_groups = groups[e.user_id]
        if kind == 0:
            g = Group(e.request_id, e.user_id, [i.item_id for i in sorted(e.items, key=lambda i: i.rank)],
                      [0.0] * len(e.items), [], e.ts, closes_at(e.ts, window_s))  # fmt: skip
            user_groups.append(g)
            new_groups.append((e, g))
            got = catch_up(g, user_groups, pending[e.user_id], weights)
            credited.update(got)
            pending[e.user_id] = [p for p in pending[e.user_id] if p.event_id not in got]
        else:
            outcome = _pending(e)
            request_id = attribute(user_groups, outcome, weights)
            if request_id is None:
                pending[e.user_id].append(outcome)  # a later impression of this batch may still take it
            else:
                credited[e.event_id] = request_id
    return new_groups, credited


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


def latest_event_times(conn: Connection, limit: datetime) -> tuple[datetime | None, datetime | None]:
    """The latest impression and outcome times already stored (not past ``limit``): where a restarted
    worker's watermark resumes."""
    imp, out = (conn.scalar(select(func.max(t.c.ts)).where(t.c.ts <= limit)) for t in (IMPRESSIONS, OUTCOMES))
    return imp, out
