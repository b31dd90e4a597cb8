"""Which rows enter the actor update, with which terms, for each signal of each group kind."""

import math

import pytest

from recast.signals.groups import Anchor, RolloutGroup
from recast.signals.repair import repair
from recast.signals.spec import SignalSpec
from recast.signals.strategy import (
    ANCHOR,
    BOUNDARY_MET,
    HINGE,
    HIT,
    LEADS,
    LOGISTIC,
    REPLAY,
    ZERO,
    ActorPlan,
    ActorRow,
    PairTerm,
    add_replay,
    build_plan,
)

GRPO = dict(hits="group_normalised", anchors="group_normalised")
PAIR = dict(hits="pair", anchors="pair")


def group(rewards, logps, gid=0):
    """Members are items 10 * gid + member index, so an item names its member."""
    return RolloutGroup(gid, list(range(10 * gid, 10 * gid + len(rewards))), list(logps), list(rewards))


def plan_of(groups, **spec):
    return build_plan(groups, SignalSpec(**spec))


def rows(plan):
    return [(r.group, r.item, r.advantage) for r in plan.rows]


HIT_G = group([0.0, 1.0, 0.0], [-1.0, -2.0, -3.0], 0)  # A = -1/3, 2/3, -1/3 over std sqrt(1/3)
ZERO_G = group([0.0, 0.0], [-1.0, -2.0], 1)
SINGLE = group([1.0], [-0.5], 2)
EMPTY = group([], [], 3)


def repaired(logps=(-1.0, -2.0, -3.0), anchor_logp=-6.0, gid=5):
    g = RolloutGroup(gid, list(range(10 * gid, 10 * gid + len(logps))), list(logps), [0.0] * len(logps),
                     anchors=(Anchor(999),))  # fmt: skip
    fixed, _ = repair(g, anchor_logp)
    return fixed


def test_group_normalised_includes_every_member_of_every_group():
    plan = plan_of([HIT_G, ZERO_G, SINGLE, EMPTY], **GRPO)
    s = math.sqrt(1 / 3) + 1e-6  # HIT: mean 1/3, squares 1/9 + 4/9 + 1/9 = 2/3, / 2 = 1/3
    expected = [(0, 0, -1 / 3 / s), (0, 1, 2 / 3 / s), (0, 2, -1 / 3 / s), (1, 10, 0.0), (1, 11, 0.0), (2, 20, 0.0)]
    assert [r[:2] for r in rows(plan)] == [e[:2] for e in expected]
    assert [r[2] for r in rows(plan)] == pytest.approx([e[2] for e in expected], abs=1e-9)
    assert plan.rows[1].advantage == pytest.approx(1.1547, abs=1e-4)  # (2/3) / .57735
    assert plan.pairs == []
    # ZERO and SINGLE are flat (nothing to normalise), EMPTY too; they stay in the batch as part "zero"
    assert plan.skipped == {"zero_advantage": 3}
    assert [r.part for r in plan.rows] == [HIT] * 3 + [ZERO] * 3
    assert plan.groups_used == 3


def test_skip_flat_leaves_out_only_the_zero_advantage_groups():
    full = plan_of([HIT_G, ZERO_G, SINGLE], **GRPO)
    lean = plan_of([HIT_G, ZERO_G, SINGLE], **GRPO, skip_flat=True)
    assert rows(lean) == rows(full)[:3] and lean.skipped == full.skipped == {"zero_advantage": 2}


def test_ranking_reward_changes_only_groups_with_a_hit():
    plain = plan_of([HIT_G, ZERO_G], **GRPO)
    ranked = plan_of([HIT_G, ZERO_G], **GRPO, ranking_reward=True)
    T = 1 + 1 / math.log2(3) + 0.5  # ReRe: r = [-1/T, 1, -.5/T]
    dev = [-1 / 3 - 0.5 / T, 2 / 3 + 0.5 / T, -1 / 3]  # -.5679728, .9013063, -.3333333
    std = math.sqrt(sum(d * d for d in dev) / 2)  # .7893224
    assert [r.advantage for r in ranked.rows[:3]] == pytest.approx([d / (std + 1e-6) for d in dev], abs=1e-9)
    assert [r.advantage for r in ranked.rows[:3]] == pytest.approx([-0.71957, 1.14187, -0.42230], abs=1e-4)
    assert rows(ranked)[3:] == rows(plain)[3:] == [(1, 10, 0.0), (1, 11, 0.0)]


def test_pair_gives_one_pair_per_usable_group():
    a = group([0.0, 1.0, 0.0], [-1.0, -2.0, -3.0], 0)  # p* 1, n* 0
    b = group([1.0, 1.0], [-1.0, -2.0], 1)  # no negative
    c = group([0.0, 0.0], [-1.0, -2.0], 2)  # no positive
    d = group([0.0, 0.0, 0.5, 0.0], [-4.0, -0.5, -1.0, -0.2], 3)  # p* 2, n* 3 (-0.2)
    plan = plan_of([a, b, c, d, EMPTY], **PAIR, contrast_loss="pg")
    assert rows(plan) == [(0, 1, 1.0), (0, 0, -1.0), (3, 32, 1.0), (3, 33, -1.0)]
    assert plan.skipped == {"no_positive": 2, "no_negative": 1}
    assert plan.groups_used == 2


def test_pair_boundary_drops_pairs_whose_positive_leads_by_the_margin():
    ahead = group([1.0, 0.0], [-1.0, -2.0], 0)  # -2 + .5 = -1.5 <= -1 -> met
    close = group([1.0, 0.0], [-1.0, -1.25], 1)  # -1.25 + .5 = -.75 > -1 -> kept
    behind = group([0.0, 1.0], [-1.0, -3.0], 2)  # -1 + .5 > -3 -> kept
    plan = plan_of([ahead, close, behind], **PAIR, contrast_loss="boundary", margin=0.5)
    assert rows(plan) == [(1, 10, 1.0), (1, 11, -1.0), (2, 21, 1.0), (2, 20, -1.0)]
    assert plan.skipped == {BOUNDARY_MET: 1}
    assert rows(plan_of([ahead], **PAIR, contrast_loss="pg")) == [(0, 0, 1.0), (0, 1, -1.0)]


def test_pair_logistic_is_a_pair_term_and_negative_weight_scales_or_drops_the_negative():
    plan = plan_of([HIT_G], **PAIR, contrast_loss="logistic")
    assert rows(plan) == [(0, 1, 0.0), (0, 0, 0.0)] and plan.pairs == [PairTerm(0, 1, 1.0, LOGISTIC)]
    assert rows(plan_of([HIT_G], **PAIR, contrast_loss="pg", negative_weight=0.25)) == [(0, 1, 1.0), (0, 0, -0.25)]
    alone = plan_of([HIT_G, ZERO_G], **PAIR, negative_weight=0.0)
    assert rows(alone) == [(0, 1, 1.0)] and alone.pairs == [] and alone.skipped == {"no_positive": 1}


def test_above_contrasts_the_positive_with_every_higher_ranked_lower_reward_member():
    # p* = member 3 (reward 1); above it: 0 (r 0), 1 (r .1, a near miss), 2 (r 0); below: 4
    g = group([0.0, 0.1, 0.0, 1.0, 0.0], [-1.0, -1.5, -2.0, -3.0, -4.0])
    plan = plan_of([g], hits="above", anchors="none")
    # raw weights: 1/log2(2) * 1 = 1; 1/log2(3) * .9 = .5678466; 1/log2(4) * 1 = .5; sum 2.0678466
    raw = [1.0, 0.9 / math.log2(3), 0.5]
    assert rows(plan) == [(0, 3, 0.0), (0, 0, 0.0), (0, 1, 0.0), (0, 2, 0.0)]
    assert [(p.positive, p.negative, p.kind) for p in plan.pairs] == [(0, 1, LOGISTIC), (0, 2, LOGISTIC),
                                                                      (0, 3, LOGISTIC)]  # fmt: skip
    assert [p.weight for p in plan.pairs] == pytest.approx([w / sum(raw) for w in raw])
    assert [p.weight for p in plan.pairs] == pytest.approx([0.48360, 0.27461, 0.24180], abs=1e-5)


def test_above_stops_once_the_positive_leads_and_skips_groups_without_a_positive():
    leads = group([1.0, 0.0, 0.0], [-1.0, -2.0, -3.0])
    plan = plan_of([leads, ZERO_G], hits="above", anchors="none")
    assert plan.rows == [] and plan.skipped == {LEADS: 1, "no_positive": 1}


def test_anchor_signals_use_only_repaired_groups_and_mark_their_rows():
    fixed = repaired()  # anchor 999 (lp -6) replaced member 2 (item 52, lp -3): gap 3
    assert fixed.injected == 2 and fixed.displaced == (52, -3.0)
    sup = plan_of([HIT_G, fixed], hits="none", anchors="supervised", anchor_weight=0.5)
    assert rows(sup) == [(1, 999, 0.5)] and sup.rows[0].part == ANCHOR and sup.skipped == {"unused": 1}
    reach = plan_of([fixed], hits="none", anchors="supervised", anchor_weight=0.5, reach_temperature=2.0)
    assert reach.rows[0].advantage == pytest.approx(0.5 * math.exp(-1.5))  # .1115651
    hinge = plan_of([fixed], hits="none", anchors="boundary", reach_temperature=1.0, hinge_margin=0.5)
    assert rows(hinge) == [(0, 999, 0.0), (0, 52, 0.0)]  # the anchor and the W-th candidate it displaced
    assert hinge.pairs == [PairTerm(0, 1, pytest.approx(math.exp(-3.0)), HINGE, 0.5)]
    literal = plan_of([fixed], **PAIR, contrast_loss="pg")  # +1 on the anchor, -1 on the top-1
    assert rows(literal) == [(0, 999, 1.0), (0, 50, -1.0)] and {r.part for r in literal.rows} == {ANCHOR}


def test_a_flipped_anchor_sign_or_weight_is_caught():
    fixed = repaired()
    plan = plan_of([fixed], hits="none", anchors="supervised", anchor_weight=0.25)
    assert plan.rows == [ActorRow(0, 999, 0.25, ANCHOR)]
    assert plan.rows != [ActorRow(0, 999, -0.25, ANCHOR)]


def test_replay_rows_follow_the_groups_and_count_as_their_own_part():
    plan = ActorPlan()
    add_replay(plan, 3, [7, 8], 0.5)
    assert plan.rows == [ActorRow(3, 7, 0.5, REPLAY), ActorRow(4, 8, 0.5, REPLAY)] and plan.groups_used == 0


def test_unknown_names_fail_listing_the_valid_ones():
    with pytest.raises(ValueError, match="group_normalised"):
        SignalSpec(hits="dpo")
    with pytest.raises(ValueError, match="supervised"):
        SignalSpec(anchors="grpo")
    with pytest.raises(ValueError, match="structural"):
        SignalSpec(reward="ndcg")
    with pytest.raises(ValueError, match="logistic"):
        SignalSpec(contrast_loss="dpo")
    with pytest.raises(ValueError, match="negative_weight"):
        SignalSpec(negative_weight=1.5)
    with pytest.raises(ValueError, match="anchor_cap"):
        SignalSpec(anchor_cap=1.5)
