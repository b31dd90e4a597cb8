"""The attribution rules on hand-made groups, with hand-computed rewards: no Kafka, no database."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from learner.ingest.attribution import (
    Group,
    PendingOutcome,
    advance,
    apply_batch,
    attribute,
    catch_up,
    close_before,
    closes_at,
    reward_of,
    target_group,
    waits,
    watermark,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
W = {"click": 0.25, "add_to_cart": 0.5, "purchase": 1.0}


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def group(rid: str, items: list[str], opened: float, window: int = 100) -> Group:
    return Group(rid, "u", list(items), [0.0] * len(items), [], s(opened), closes_at(s(opened), window))


def out(eid: str, item: str, kind: str, at: float, rid: str | None = None) -> PendingOutcome:
    return PendingOutcome(eid, "u", rid, item, kind, s(at))


def test_reward_is_the_max_per_item_never_a_sum():
    g = group("r1", ["a", "b", "c"], 0)
    for i, (item, kind) in enumerate([("b", "click"), ("b", "purchase"), ("b", "click"), ("c", "add_to_cart")]):
        assert attribute([g], out(f"e{i}", item, kind, 10 + i), W) == "r1"
    assert g.rewards == [0.0, 1.0, 0.5]  # b: max(0.25, 1.0, 0.25); c: 0.5
    assert not g.all_zero and g.dirty


def test_most_recent_serving_group_wins_unless_the_outcome_names_one():
    old, new = group("old", ["a", "b"], 0), group("new", ["b", "c"], 30)
    assert attribute([old, new], out("e1", "b", "click", 40), W) == "new"
    assert attribute([old, new], out("e2", "b", "purchase", 41, rid="old"), W) == "old"
    # The named group must serve the item: otherwise the usual rule applies.
    assert attribute([old, new], out("e3", "c", "add_to_cart", 42, rid="old"), W) == "new"
    assert old.rewards == [0.0, 1.0] and new.rewards == [0.25, 0.5]


def test_windows_are_event_time_half_open():
    g = group("r1", ["a"], 0, window=100)
    assert target_group([g], out("e", "a", "click", -1)) is None  # before the impression
    assert target_group([g], out("e", "a", "click", 0)) is g
    assert target_group([g], out("e", "a", "click", 99.9)) is g
    assert target_group([g], out("e", "a", "click", 100)) is None  # closes_at is exclusive


def test_off_list_outcome_is_organic_for_every_group_in_window_once():
    g1, g2, g3 = group("r1", ["a"], 0), group("r2", ["b"], 50), group("r3", ["c"], 200)
    o = out("e1", "z", "purchase", 60)
    assert attribute([g1, g2, g3], o, W) is None
    assert attribute([g1, g2, g3], o, W) is None  # applied twice: recorded once
    assert g1.organic == g2.organic == [{"item_id": "z", "type": "purchase", "event_id": "e1"}]
    assert g3.organic == [] and not g3.dirty  # not in window at t=60
    assert g1.all_zero and g2.all_zero  # organic positives are not rewards


def test_pending_outcomes_are_taken_by_a_late_impression_in_event_time_order():
    early = [out("e2", "b", "purchase", 20), out("e1", "b", "click", 10), out("e3", "x", "click", 30),
             out("e0", "b", "purchase", -5)]  # fmt: skip
    g = group("r1", ["a", "b"], 0)
    credited = catch_up(g, [g], early, W)
    assert credited == {"e1": "r1", "e2": "r1"}  # e0 precedes the impression; e3 is off the list
    assert g.rewards == [0.0, 1.0]
    assert g.organic == [{"item_id": "x", "type": "click", "event_id": "e3"}]


def test_a_pending_outcome_that_lands_on_a_list_leaves_the_organic_lists():
    g1 = group("r1", ["a"], 0)
    o = out("e1", "b", "click", 20)
    assert attribute([g1], o, W) is None and g1.organic
    g2 = group("r2", ["b"], 10)  # arrives late, but was served before the click
    assert catch_up(g2, [g1, g2], [o], W) == {"e1": "r2"}
    assert g1.organic == [] and g2.rewards == [0.25]


def test_unknown_type_names_the_known_ones():
    with pytest.raises(ValueError, match="add_to_cart, click, purchase"):
        reward_of("view", W)


def test_watermark_and_closing():
    wm = advance(None, [s(10), s(5)], now=s(1000))
    assert wm == s(10)
    assert advance(wm, [s(3)], now=s(1000)) == s(10)  # never goes back
    assert advance(wm, [s(10_000)], now=s(1000), max_skew_s=300) == s(10)  # future-stamped: ignored
    assert advance(None, [], now=s(0)) is None
    assert watermark(s(10), s(500)) == s(10) == watermark(s(500), s(10))  # the lagging topic holds it back
    assert watermark(s(10), None) is None  # a topic never read yet: nothing closes
    assert close_before(s(160), lateness_s=60) == s(100) and close_before(None, 60) is None


# ---------------------------------------------------------------- outcomes naming a request not read yet


class Worker:
    """The worker's state across batches, as the store keeps it: open groups, unattributed outcomes
    (held ones included) and the request ids read."""

    def __init__(self, window: int = 100):
        self.groups: dict[str, list[Group]] = {}
        self.pending: dict[str, list[PendingOutcome]] = {}
        self.seen: set[str] = set()
        self.window = window
        self.credited: dict[str, str] = {}

    def batch(self, *events, release_before: datetime | None = None) -> dict[str, str]:
        fresh = [e for e in events if isinstance(e, Group)]
        outcomes = [e for e in events if isinstance(e, PendingOutcome)]
        got = apply_batch(self.groups, self.pending, fresh, outcomes, W, self.seen, release_before, self.window)
        for user, ps in self.pending.items():  # what the store would find unattributed next time
            self.pending[user] = [p for p in ps if p.event_id not in got]
        self.credited.update(got)
        return got

    def state(self) -> dict[str, tuple]:
        return {g.request_id: (g.rewards, sorted(p["event_id"] for p in g.organic))
                for gs in self.groups.values() for g in gs}  # fmt: skip


def test_held_while_the_named_request_is_unread_and_its_window_not_passed():
    o = out("e1", "b", "click", 20, rid="r2")
    assert waits(o, {"r1"}, None, 100)  # r2 unread, no watermark yet
    assert waits(o, {"r1"}, s(119), 100)  # 20 + 100 > 119: its window has not passed
    assert not waits(o, {"r1"}, s(120), 100)  # passed: the fallback rule applies
    assert not waits(o, {"r1", "r2"}, None, 100)  # r2 read: the usual rules apply
    assert not waits(out("e2", "b", "click", 20), set(), None, 100)  # names no request: never held


def test_an_outcome_naming_an_unread_request_is_credited_to_it_when_it_arrives():
    w = Worker()
    assert w.batch(out("e1", "b", "purchase", 20, rid="r2")) == {}
    assert [p.event_id for p in w.pending["u"]] == ["e1"]  # stored, waiting
    r2 = group("r2", ["a", "b"], 10)
    assert w.batch(r2) == {"e1": "r2"}
    assert r2.rewards == [0.0, 1.0] and r2.organic == []
    assert w.pending["u"] == []


def test_another_open_list_of_the_user_serving_the_item_gets_nothing():
    w = Worker()
    r1, r2 = group("r1", ["a", "b"], 0), group("r2", ["b", "c"], 10)
    w.batch(r1)
    # r1 serves b and is in window at t=20, but the outcome names r2, which is not read yet: held, not r1's.
    assert w.batch(out("e1", "b", "purchase", 20, rid="r2"), out("e2", "z", "click", 21, rid="r2")) == {}
    assert r1.rewards == [0.0, 0.0] and r1.organic == [] and not r1.dirty
    assert w.batch(r2) == {"e1": "r2"}
    assert r1.rewards == [0.0, 0.0] and r2.rewards == [1.0, 0.0]
    # e2 is off r2's list: once r2 is read, it is organic for every list in window, as if read in event order.
    assert r1.organic == r2.organic == [{"item_id": "z", "type": "click", "event_id": "e2"}]


def test_a_new_list_of_the_user_does_not_take_an_outcome_held_for_another():
    w = Worker()
    w.batch(out("e1", "b", "purchase", 20, rid="r2"))
    r1, r2 = group("r1", ["a", "b"], 0), group("r2", ["b"], 10)
    assert w.batch(r1) == {}  # e1 lies in r1's window and r1 serves b, but e1 waits for r2
    assert r1.rewards == [0.0, 0.0]
    assert w.batch(r2) == {"e1": "r2"} and r2.rewards == [1.0]
    # Both impressions in one batch, the named one read last: the same.
    v = Worker()
    v.batch(out("e1", "b", "purchase", 20, rid="r2"))
    v1, v2 = group("r1", ["a", "b"], 0), group("r2", ["b"], 10)
    assert v.batch(v1, v2) == {"e1": "r2"} and (v1.rewards, v2.rewards) == ([0.0, 0.0], [1.0])


def test_when_the_named_list_does_not_qualify_the_usual_rule_applies_on_its_arrival():
    w = Worker()
    r1 = group("r1", ["a", "b"], 0)
    w.batch(r1)
    w.batch(out("e1", "b", "click", 20, rid="r2"))  # r2 will turn out to be served at t=30, after the click
    r2 = group("r2", ["b"], 30)
    assert w.batch(r2) == {"e1": "r1"}  # what reading r2 first gives: r2 is not in window at t=20
    assert r1.rewards == [0.0, 0.25] and r2.rewards == [0.0]


def test_when_the_window_passes_without_the_impression_the_outcome_falls_back():
    w = Worker(window=100)
    r1 = group("r1", ["a", "b"], 0)
    w.batch(r1)
    held = [out("e1", "b", "purchase", 20, rid="r2"), out("e2", "z", "click", 21, rid="r2")]
    assert w.batch(*held, release_before=s(119)) == {}  # 20 + 100 > 119: still held
    assert r1.rewards == [0.0, 0.0] and r1.organic == []
    # The store hands the held outcomes whose window has now passed back to apply_batch.
    released = w.pending.pop("u")
    assert w.batch(*released, release_before=s(121)) == {"e1": "r1"}  # r1 still open: it takes the credit
    assert r1.rewards == [0.0, 1.0]
    assert r1.organic == [{"item_id": "z", "type": "click", "event_id": "e2"}]  # off r1's list: organic


def test_read_order_does_not_change_the_groups():
    """Every order of reading these events, one per batch, gives what reading them in event order gives."""
    events = [
        group("r1", ["a", "b"], 0),
        group("r2", ["b", "c"], 10),
        out("e1", "b", "purchase", 20, rid="r2"),  # r1 also serves b
        out("e2", "b", "click", 15, rid="r1"),
        out("e3", "c", "add_to_cart", 30),  # only r2 serves c
        out("e4", "z", "click", 12),  # organic for r1 and r2
        out("e5", "y", "click", 22, rid="r2"),  # named but off the list: organic for both
        out("e6", "a", "click", 25, rid="r2"),  # named r2, served only by r1: r1's
    ]
    expected = {"r1": ([0.25, 0.25], ["e4", "e5"]), "r2": ([1.0, 0.5], ["e4", "e5"])}
    for order in itertools.permutations(range(len(events))):
        w = Worker()
        for i in order:
            e = events[i]
            e = Group(e.request_id, e.user_id, list(e.items), [0.0] * len(e.items), [], e.opened_at, e.closes_at) \
                if isinstance(e, Group) else e  # fmt: skip
            w.batch(e)
        assert w.state() == expected, [events[i] for i in order]
        assert w.credited == {"e1": "r2", "e2": "r1", "e3": "r2", "e6": "r1"}
