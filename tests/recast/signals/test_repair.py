"""ReCast repair: which groups get an anchor, which member it displaces, and the audit record."""

from recast.signals.contrast import NO_NEGATIVE, ContrastPair, select_pair
from recast.signals.groups import Anchor, RolloutGroup
from recast.signals.repair import (
    NOT_NEEDED,
    REPAIRED,
    UNREPAIRABLE,
    RepairRecord,
    needs_anchor_score,
    repair,
    usable_anchor,
)


def zero_group(items, logps, anchors=(), segment="seg", gid=7):
    return RolloutGroup(gid, list(items), list(logps), [0.0] * len(items), segment, tuple(anchors))


def test_all_zero_group_is_repaired_in_place_of_the_lowest_scoring_member():
    # lowest log-prob is -4.0 at member 1 (not the last member)
    g = zero_group([10, 11, 12], [-1.0, -4.0, -2.5], [Anchor(42, "organic_click")], segment="new")
    fixed, record = repair(g, -6.25)
    assert fixed.items == [10, 42, 12]
    assert fixed.logprobs == [-1.0, -6.25, -2.5]
    assert fixed.rewards == [0.0, 1.0, 0.0]
    assert fixed.injected == 1
    assert (fixed.group_id, fixed.segment, fixed.hits) == (7, "new", 1)
    assert record == RepairRecord(7, "new", REPAIRED, 42, "organic_click", 11, -4.0, -6.25)
    assert record.to_dict() == {
        "group_id": 7,
        "segment": "new",
        "status": "repaired",
        "anchor_item": 42,
        "anchor_source": "organic_click",
        "replaced_item": 11,
        "replaced_logprob": -4.0,
        "anchor_logprob": -6.25,
    }
    # the input group is not mutated
    assert (g.items, g.logprobs, g.rewards, g.injected) == ([10, 11, 12], [-1.0, -4.0, -2.5], [0.0] * 3, None)
    # the repaired group now contrasts the anchor (member 1) with the top negative (member 0, -1.0)
    assert select_pair(fixed) == ContrastPair(7, 1, 0)


def test_ties_for_lowest_score_replace_the_later_member():
    g = zero_group([1, 2, 3, 4], [-1.0, -3.0, -2.0, -3.0], [Anchor(9)])
    fixed, record = repair(g, -0.5)
    # members 1 and 3 tie at -3.0 -> the later one (3) is replaced
    assert fixed.items == [1, 2, 3, 9] and fixed.injected == 3
    assert (record.replaced_item, record.replaced_logprob) == (4, -3.0)
    g = zero_group([1, 2], [-2.0, -2.0], [Anchor(9)])
    fixed, _ = repair(g, -1.0)
    assert fixed.items == [1, 9] and fixed.rewards == [0.0, 1.0]


def test_group_with_a_hit_is_not_repaired():
    g = RolloutGroup(1, [1, 2, 3], [-1.0, -2.0, -3.0], [0.0, 0.25, 0.0], "s", (Anchor(50),))
    fixed, record = repair(g, -5.0)
    assert fixed is g
    assert record == RepairRecord(1, "s", NOT_NEEDED)
    assert (record.anchor_item, record.replaced_item) == (None, None)
    assert needs_anchor_score(g) is None
    # all-positive group: also not needed
    g = RolloutGroup(2, [1, 2], [-1.0, -2.0], [1.0, 1.0], "", (Anchor(50),))
    assert repair(g, -5.0)[1].status == NOT_NEEDED


def test_group_without_an_anchor_is_unrepairable():
    g = zero_group([1, 2], [-1.0, -2.0], anchors=())
    assert usable_anchor(g) is None and needs_anchor_score(g) is None
    fixed, record = repair(g, -3.0)
    assert fixed is g
    assert record == RepairRecord(7, "seg", UNREPAIRABLE)


def test_anchor_already_a_member_is_not_usable():
    # the anchor 2 was rolled out (with reward 0, e.g. its positive weight was dropped): not usable
    g = zero_group([1, 2, 3], [-1.0, -2.0, -3.0], [Anchor(2)])
    assert usable_anchor(g) is None and needs_anchor_score(g) is None
    fixed, record = repair(g, -3.0)
    assert fixed is g and record.status == UNREPAIRABLE


def test_first_anchor_not_among_the_members_is_used():
    g = zero_group([1, 2, 3], [-1.0, -2.0, -3.0], [Anchor(2), Anchor(8, "organic_click"), Anchor(9)])
    assert usable_anchor(g) == Anchor(8, "organic_click")
    assert needs_anchor_score(g) == Anchor(8, "organic_click")
    fixed, record = repair(g, -4.0)
    assert fixed.items == [1, 2, 8] and record.anchor_item == 8 and record.anchor_source == "organic_click"


def test_missing_anchor_logprob_is_unrepairable():
    g = zero_group([1, 2], [-1.0, -2.0], [Anchor(5)])
    fixed, record = repair(g, None)
    assert fixed is g and record.status == UNREPAIRABLE


def test_empty_group_is_unrepairable_even_with_an_anchor():
    g = zero_group([], [], [Anchor(5)])
    fixed, record = repair(g, -1.0)
    assert fixed is g and record.status == UNREPAIRABLE


def test_single_candidate_all_zero_group_becomes_all_positive():
    g = zero_group([3], [-0.7], [Anchor(4)])
    fixed, record = repair(g, -2.0)
    # the anchor replaces the only member
    assert (fixed.items, fixed.logprobs, fixed.rewards, fixed.injected) == ([4], [-2.0], [1.0], 0)
    assert (record.status, record.replaced_item, record.replaced_logprob) == (REPAIRED, 3, -0.7)
    assert select_pair(fixed) == NO_NEGATIVE


def test_integer_anchor_logprob_is_stored_as_float():
    fixed, _ = repair(zero_group([1, 2], [-1.0, -2.0], [Anchor(5)]), -3)
    assert fixed.logprobs == [-1.0, -3.0] and isinstance(fixed.logprobs[1], float)
