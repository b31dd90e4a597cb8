"""What a refresh reads: the window of closed reward groups it learns from, straight from Postgres.

**The window.** A refresh learns from *complete periods* of event time (UTC-aligned; a day by
default): the groups opened in ``[start, end)``, where ``end`` is the last period boundary before
now and ``start`` is where the last *published* refresh's window ended (a rejected candidate's
data is learned again the next night, with the night after it). A period still being logged is
never half-read, and a period whose groups are not all closed yet (their attribution windows run
past the boundary, or the ingest worker is behind) makes the run wait for the next tick.

**The slice.** The latest ``heldout_share`` of the window's groups by event time is the gate's:
scored, never trained on, and kept out of every later refresh's replay too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, and_, func, not_, or_, select

from recast.added_items import added_item
from recast.catalog import Catalog, append_items
from recast.catalog_version import CatalogVersion, recorded_version
from recast.feedback import LoggedList
from schemas import catalog as ledger
from schemas.tables import RewardGroup, TrainingRun

G = RewardGroup.__table__.c
R = TrainingRun.__table__.c
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    start: datetime | None  # None: from the first group ever logged
    end: datetime


@dataclass(frozen=True)
class LoggedGroup:
    """A closed reward group as read: ids are the catalog's strings."""

    request_id: str
    user_id: str
    segment: str
    model_version: str
    opened_at: datetime
    history: tuple[str, ...]
    items: tuple[str, ...]
    rewards: tuple[float, ...]
    organic: tuple[tuple[str, str], ...]  # (item_id, outcome type), first seen first


def catalog_version(conn: Connection) -> CatalogVersion | None:
    """The catalog version a refresh trains under, which its child's manifest names: the ledger's head, checked
    against the digest recorded with it. None before any version is recorded (the data set's base)."""
    number = ledger.head_number(conn)
    if number is None:
        return None
    found = ledger.contents(conn, number)
    return recorded_version(found.codes, found.retired, number, found.version.digest)


def grown_catalog(conn: Connection, catalog: Catalog, version: CatalogVersion | None) -> Catalog:
    """The data set's ``catalog`` with the items added online by ``version`` (the ledger's, with their entries)
    appended in the order they were added: the catalog a refresh trains on, so it learns their interactions."""
    if version is None:
        return catalog
    added = [added_item(a.item_id, a.code, a.entry) for a in ledger.added_items(conn, version.version)
             if a.item_id not in catalog.index]  # fmt: skip
    return append_items(catalog, added) if added else catalog


def period_floor(now: datetime, period_s: int) -> datetime:
    """The last period boundary at or before ``now`` (boundaries are multiples of the period since the epoch).

    >>> period_floor(datetime(2026, 1, 2, 5, 30, tzinfo=UTC), 86_400).isoformat()
    '2026-01-02T00:00:00+00:00'
    """
    seconds = (now - EPOCH).total_seconds()
    return EPOCH + timedelta(seconds=(seconds // period_s) * period_s)


def window(conn: Connection, period_s: int, now: datetime) -> Window:
    last = conn.execute(
        select(func.max(R.window_end)).where(R.kind == "refresh", R.status == "succeeded", R.decision == "published")
    ).scalar()
    return Window(last, period_floor(now, period_s))


def _in(window: Window):
    return and_(G.opened_at < window.end, *([G.opened_at >= window.start] if window.start else []))


def still_open(conn: Connection, window: Window) -> int:
    """Groups of the window whose attribution window has not closed yet."""
    return conn.execute(select(func.count()).where(G.window_open, _in(window))).scalar()


def read_groups(conn: Connection, window: Window) -> list[LoggedGroup]:
    """The window's closed groups, oldest first (ties by request id, so the slice is reproducible)."""
    return _read(conn, and_(~G.window_open, _in(window)))


def read_replay(conn: Connection, before: datetime | None, limit: int) -> list[LoggedGroup]:
    """Up to ``limit`` closed groups from before the window, newest first, never from an earlier gate slice."""
    if before is None or limit <= 0:
        return []
    slices = conn.execute(select(R.heldout_from, R.window_end).where(
        R.kind == "refresh", R.status == "succeeded", R.heldout_from.is_not(None))).all()  # fmt: skip
    in_a_slice = or_(*[and_(G.opened_at >= a, G.opened_at < b) for a, b in slices]) if slices else None
    where = and_(~G.window_open, G.opened_at < before, *([not_(in_a_slice)] if in_a_slice is not None else []))
    return list(reversed(_read(conn, where, newest_first=True, limit=limit)))


def _read(conn: Connection, where, newest_first: bool = False, limit: int | None = None) -> list[LoggedGroup]:
    order = (G.opened_at.desc(), G.request_id.desc()) if newest_first else (G.opened_at, G.request_id)
    query = select(G.request_id, G.user_id, G.segment, G.model_version, G.opened_at, G.history, G["items"],
                   G.rewards, G.organic_positives).where(where).order_by(*order)  # fmt: skip
    if limit is not None:
        query = query.limit(limit)
    return [
        LoggedGroup(r.request_id, r.user_id, r.segment, r.model_version, r.opened_at, tuple(r.history),
                    tuple(r.items), tuple(float(x) for x in r.rewards),
                    tuple((o["item_id"], o["type"]) for o in r.organic_positives))  # fmt: skip
        for r in conn.execute(query)
    ]


def split_slice(groups: list[LoggedGroup], share: float) -> tuple[list[LoggedGroup], list[LoggedGroup], datetime]:
    """(train, gate slice, the slice's first opened_at): the latest ``share`` of the groups by event time.
    Groups opened at the same instant stay together, so the cut is a time, not a row count."""
    if len(groups) < 2:
        raise ValueError("a window of fewer than two groups cannot be cut into training and a gate slice")
    cut = min(len(groups) - 1, max(1, round(len(groups) * (1.0 - share))))
    start = groups[cut].opened_at
    train = [g for g in groups if g.opened_at < start]
    if not train:  # everything at one instant: fall back to the row cut
        return groups[:cut], groups[cut:], start
    return train, [g for g in groups if g.opened_at >= start], start


def to_logged(group: LoggedGroup, catalog: Catalog, weights: dict[str, float], max_history: int) -> LoggedList:
    """Catalog positions, the history cut as the prompt was; unknown items (another catalog) are dropped."""
    index = catalog.index
    served = [(index[i], r) for i, r in zip(group.items, group.rewards) if i in index]
    organic: dict[int, tuple[float, str]] = {}  # position -> (weight, type) of its strongest outcome
    for item_id, kind in group.organic:
        if item_id in index:
            position, weight = index[item_id], weights.get(kind, 0.0)
            if position not in organic or weight > organic[position][0]:
                organic[position] = (weight, kind)
    history = tuple(index[i] for i in group.history if i in index)[-max_history:]
    return LoggedList(group.user_id, history, tuple(i for i, _ in served), tuple(r for _, r in served),
                      tuple((i, w) for i, (w, _) in organic.items()), group.segment,
                      tuple(kind for _, kind in organic.values()), group.request_id)  # fmt: skip
