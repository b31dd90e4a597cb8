"""The rules of attribution as plain functions over plain data: no Kafka, no database.

Time is **event time** (the ``ts`` the service and the storefront stamped), never the
clock of the worker, so replaying a topic into an empty database rebuilds the same groups:

- A group is open for outcomes of its user with ``opened_at <= outcome.ts < closes_at``,
  where ``opened_at`` is the impression's ``ts`` and ``closes_at = ts + window``.
- An outcome goes to the group it names (``request_id``) if that group is in window and
  served the item; else to the most recent in-window group that served the item
  (latest ``opened_at``, ties by ``request_id``). Its reward for that item becomes
  ``max(existing, weight[type])``: a purchase after a click is worth a purchase, and a
  second click adds nothing.
- An outcome whose item no in-window group served is an *organic positive* of every
  in-window group of the user; it stays unattributed (``attributed_request_id`` NULL).
- An outcome with no in-window group waits (*pending*). A new group picks up the pending
  outcomes of its user inside its window, in event-time order, by the same rules; one that
  now lands on its list leaves the organic lists of the user's other groups.
- An outcome that names a request the worker has not read yet is *held* (see :func:`waits`):
  it credits nothing and is nobody's organic positive, because the two topics are read in no
  particular order and the named list may simply not have been read yet. It is applied by the
  rules above (so to the named group when that qualifies) as soon as the named impression
  arrives, whatever its time; or, should it never come, once the outcome's window has passed
  (``ts + window <= close_before(...)``, event time), to the groups open then. Until then it
  keeps the groups it could fall back to from closing. So the named group gets the credit in
  every reading order, and replaying the topics rebuilds the same groups.
- The worker closes a group once its ``closes_at`` lies ``lateness`` behind the *watermark*:
  how far event time has surely got on every partition of both topics, shared by the group's
  workers (``learner/ingest/watermarks.py``); see :func:`watermark` and :func:`close_before`
  for the rule with one partition per topic. Closing is the one rule that depends on
  reading order: an outcome that arrives after its group closed (later than ``lateness``
  behind the other topic) stays unattributed, and so does a named impression that arrives
  after its held outcomes were released to the fallback groups.

>>> g = Group("r1", "u1", ["a", "b"], [0.0, 0.0], [], T0, T0 + timedelta(seconds=60))
>>> credit = attribute([g], PendingOutcome("e1", "u1", None, "b", "click", T0), WEIGHTS)
>>> credit, g.rewards, g.all_zero
('r1', [0.0, 0.25], False)
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # for the doctests
_EPOCH, _MICROSECOND = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)
WEIGHTS = {"click": 0.25, "add_to_cart": 0.5, "purchase": 1.0}


@dataclass
class Group:
    """One served list's reward state (mirrors a ``reward_groups`` row)."""

    request_id: str
    user_id: str
    items: list[str]
    rewards: list[float]
    organic: list[dict]  # [{item_id, type, event_id}]
    opened_at: datetime
    closes_at: datetime
    dirty: bool = field(default=False, compare=False)  # changed since loaded: the worker writes it back

    @property
    def all_zero(self) -> bool:
        return not any(r > 0 for r in self.rewards)

    def in_window(self, ts: datetime) -> bool:
        return self.opened_at <= ts < self.closes_at


@dataclass
class PendingOutcome:
    """What attribution needs of an outcome."""

    event_id: str
    user_id: str
    request_id: str | None
    item_id: str
    type: str
    ts: datetime


def closes_at(opened_at: datetime, window_s: int) -> datetime:
    """The end of a group's window (exclusive).

    >>> closes_at(T0, 90).isoformat()
    '2026-01-01T00:01:30+00:00'
    """
    return opened_at + timedelta(seconds=window_s)


def reward_of(kind: str, weights: dict[str, float]) -> float:
    """The weight of an outcome type; an unknown type fails naming the known ones.

    >>> reward_of("purchase", WEIGHTS)
    1.0
    """
    try:
        return weights[kind]
    except KeyError:
        raise ValueError(f"unknown outcome type {kind!r}; known: {', '.join(sorted(weights))}") from None


def target_group(groups: Iterable[Group], outcome: PendingOutcome) -> Group | None:
    """The group an outcome credits: the named one if it qualifies, else the most recent that served the item."""
    serving = [g for g in groups if g.in_window(outcome.ts) and outcome.item_id in g.items]
    named = [g for g in serving if g.request_id == outcome.request_id]
    if named:
        return named[0]
    return max(serving, key=lambda g: (g.opened_at, g.request_id), default=None)


def attribute(groups: list[Group], outcome: PendingOutcome, weights: dict[str, float]) -> str | None:
    """Apply one outcome to a user's groups in place; returns the credited request id (None: organic or pending).

    Groups touched get ``dirty = True``. An organic positive is recorded once per group
    (by ``event_id``), so applying the same outcome twice changes nothing the second time.
    """
    target = target_group(groups, outcome)
    if target is not None:
        i = target.items.index(outcome.item_id)
        new = max(target.rewards[i], reward_of(outcome.type, weights))
        if new != target.rewards[i]:
            target.rewards[i] = new
            target.dirty = True
        for g in groups:  # on a served list now, so organic nowhere
            kept = [p for p in g.organic if p["event_id"] != outcome.event_id]
            if len(kept) != len(g.organic):
                g.organic, g.dirty = kept, True
        return target.request_id
    for g in groups:
        if g.in_window(outcome.ts) and all(p["event_id"] != outcome.event_id for p in g.organic):
            g.organic = [*g.organic, {"item_id": outcome.item_id, "type": outcome.type, "event_id": outcome.event_id}]
            g.dirty = True
    return None


def waits(outcome: PendingOutcome, seen: Container[str], release_before: datetime | None, window_s: int) -> bool:
    """Whether an outcome is *held*: it names a request the worker has not ``seen`` (read the impression of)
    and its window has not passed yet (``outcome.ts + window_s > release_before``; ``None``: nothing passed).

    >>> o = PendingOutcome("e1", "u1", "r2", "b", "click", T0)
    >>> waits(o, {"r1"}, None, 60), waits(o, {"r1", "r2"}, None, 60)
    (True, False)
    >>> waits(o, {"r1"}, T0 + timedelta(seconds=59), 60), waits(o, {"r1"}, T0 + timedelta(seconds=60), 60)
    (True, False)
    """
    if outcome.request_id is None or outcome.request_id in seen:
        return False
    return release_before is None or outcome.ts + timedelta(seconds=window_s) > release_before


def catch_up(
    group: Group,
    groups: list[Group],
    pending: list[PendingOutcome],
    weights,
    held: Callable[[PendingOutcome], bool] | None = None,
) -> dict[str, str]:
    """A new ``group`` joins ``groups`` (the user's open ones, ``group`` included) and takes the
    pending outcomes in its window, oldest first; returns ``{event_id: request_id}`` of those credited.

    Outcomes that name ``group`` are applied whatever their time (they waited for it); outcomes
    ``held`` for another request are left alone."""
    credited = {}
    for outcome in sorted(pending, key=lambda o: (o.ts, o.event_id)):
        if not (group.in_window(outcome.ts) or outcome.request_id == group.request_id):
            continue
        if held is not None and held(outcome):
            continue
        request_id = attribute(groups, outcome, weights)
        if request_id is not None:
            credited[outcome.event_id] = request_id
    return credited


def apply_batch(
    groups: dict[str, list[Group]],
    pending: dict[str, list[PendingOutcome]],
    fresh: list[Group],
    outcomes: list[PendingOutcome],
    weights: dict[str, float],
    seen: set[str],
    release_before: datetime | None,
    window_s: int,
) -> dict[str, str]:
    """One batch in event-time order (a new group before an outcome of the same instant), in place.

    ``groups``: each user's open groups (the ``fresh`` ones are appended as they come); ``pending``:
    each user's unattributed outcomes a fresh group may take (held ones included; outcomes of the
    batch that credit nothing are appended); ``seen``: the request ids read before the batch (the
    fresh ones are added as they come). Returns ``{event_id: request_id}`` of the credited outcomes.
    """

    def held(o: PendingOutcome) -> bool:
        return waits(o, seen, release_before, window_s)

    credited: dict[str, str] = {}
    # Integer microseconds as the sort key: comparing aware datetimes (an offset lookup per comparison) was
    # most of the cost of this sort.
    events = sorted([(_micros(g.opened_at), 0, g.request_id, g) for g in fresh] +
                    [(_micros(o.ts), 1, o.event_id, o) for o in outcomes], key=lambda t: t[:3])  # fmt: skip
    for _, kind, _, e in events:
        user_groups, user_pending = groups.setdefault(e.user_id, []), pending.setdefault(e.user_id, [])
        if kind == 0:
            user_groups.append(e)
            seen.add(e.request_id)
            got = catch_up(e, user_groups, user_pending, weights, held)
            credited.update(got)
            pending[e.user_id] = [p for p in user_pending if p.event_id not in got]
        elif held(e):
            user_pending.append(e)  # waits for its impression (or its window's end)
        else:
            request_id = attribute(user_groups, e, weights)
            if request_id is None:
                user_pending.append(e)  # a later impression of this batch may still take it
            else:
                credited[e.event_id] = request_id
    return credited


def _micros(ts: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (an aware datetime).

    >>> _micros(T0 + timedelta(microseconds=1)) - _micros(T0)
    1
    """
    return (ts - _EPOCH) // _MICROSECOND


def advance(watermark: datetime | None, times: Iterable[datetime], now: datetime, max_skew_s: int = 300) -> datetime:
    """The latest event time seen. Times more than ``max_skew_s`` ahead of the wall clock are
    ignored, so one event stamped in the year 9999 cannot close every group at once.

    >>> advance(None, [T0, T0 + timedelta(seconds=5)], now=T0 + timedelta(days=1)).isoformat()
    '2026-01-01T00:00:05+00:00'
    >>> advance(T0, [T0 + timedelta(days=9)], now=T0).isoformat()
    '2026-01-01T00:00:00+00:00'
    """
    limit = now + timedelta(seconds=max_skew_s)
    candidates = [t for t in times if t <= limit]
    if watermark is not None:
        candidates.append(watermark)
    return max(candidates) if candidates else watermark


def watermark(impressions_seen: datetime | None, outcomes_seen: datetime | None) -> datetime | None:
    """How far event time has surely got: the lesser of the two topics' latest times. One topic read
    far ahead of the other (a backlog, a slow partition) must not close groups whose outcomes still
    wait unread in the other.

    >>> watermark(T0, T0 + timedelta(hours=1)) == T0, watermark(None, T0)
    (True, None)
    """
    return None if impressions_seen is None or outcomes_seen is None else min(impressions_seen, outcomes_seen)


def close_before(mark: datetime | None, lateness_s: int) -> datetime | None:
    """Groups with ``closes_at <= close_before(...)`` close: their window ended ``lateness_s`` behind the
    watermark, so outcomes that late (another partition, a retrying storefront) still count.

    >>> close_before(T0 + timedelta(seconds=60), 60) == T0, close_before(None, 60)
    (True, None)
    """
    return None if mark is None else mark - timedelta(seconds=lateness_s)
