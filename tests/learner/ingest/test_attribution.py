"""The attribution rules on hand-made groups, with hand-computed rewards: no Kafka, no database."""

from datetime import UTC, datetime, timedelta

import pytest

from learner.ingest.attribution import (
    Group,
    PendingOutcome,
    advance,
    attribute,
    catch_up,
    close_before,
    closes_at,
    reward_of,
    target_group,
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
