"""Which members enter the actor update, with which advantage, for each strategy."""

import math

import pytest

from recast.signals.groups import RolloutGroup
from recast.signals.strategy import BOUNDARY_MET, ActorPlan, ActorRow, grpo_plan, recast_plan


def group(rewards, logps, gid=0):
    return RolloutGroup(gid, list(range(10 * gid, 10 * gid + len(rewards))), list(logps), list(rewards))


HIT = group([0.0, 1.0, 0.0], [-1.0, -2.0, -3.0], 0)  # A = -1/3, 2/3, -1/3 over std sqrt(1/3)
ZERO = group([0.0, 0.0], [-1.0, -2.0], 1)
SINGLE = group([1.0], [-0.5], 2)
EMPTY = group([], [], 3)


def rows(plan):
    return [(r.group, r.member, r.advantage) for r in plan.rows]


def test_grpo_plan_includes_every_member_of_every_group():
    plan = grpo_plan([HIT, ZERO, SINGLE, EMPTY])
    # HIT: mean 1/3, squares 1/9 + 4/9 + 1/9 = 2/3, / 2 = 1/3, std = .5773503
    s = math.sqrt(1 / 3) + 1e-6
    expected = [(0, 0, -1 / 3 / s), (0, 1, 2 / 3 / s), (0, 2, -1 / 3 / s), (1, 0, 0.0), (1, 1, 0.0), (2, 0, 0.0)]
    assert [r[:2] for r in rows(plan)] == [e[:2] for e in expected]
    assert [r[2] for r in rows(plan)] == pytest.approx([e[2] for e in expected], abs=1e-9)
    assert plan.rows[1].advantage == pytest.approx(1.1547, abs=1e-4)  # (2/3) / .57735
    assert plan.pairs == []
    # ZERO and EMPTY are all-zero (counted, still in the batch where they have members)
    assert plan.skipped == {"zero_advantage": 2}
    assert plan.groups_used == 3  # groups 0, 1, 2 (EMPTY has no member)


def test_grpo_ranking_reward_changes_only_groups_with_a_hit():
    plain = grpo_plan([HIT, ZERO])
    ranked = grpo_plan([HIT, ZERO], ranking_reward=True)
    # HIT with ReRe: T = 1 + 1/log2(3) + .5 = 2.1309298; r = [-1/T, 1, -.5/T]
    # mean = (1 - 1.5/T) / 3; deviations: -1/3 - .5/T, 2/3 + .5/T, -1/3
    T = 1 + 1 / math.log2(3) + 0.5
    dev = [-1 / 3 - 0.5 / T, 2 / 3 + 0.5 / T, -1 / 3]  # -.5679728, .9013063, -.3333333
    std = math.sqrt(sum(d * d for d in dev) / 2)  # sqrt(1.2460568 / 2) = .7893224
    assert [r.advantage for r in ranked.rows[:3]] == pytest.approx([d / (std + 1e-6) for d in dev], abs=1e-9)
    assert [r.advantage for r in ranked.rows[:3]] == pytest.approx([-0.71957, 1.14187, -0.42230], abs=1e-4)
    assert [r.advantage for r in ranked.rows[:3]] != pytest.approx([r.advantage for r in plain.rows[:3]])
    # the all-zero group gets no penalty: still advantage 0 on both members
    assert rows(ranked)[3:] == rows(plain)[3:] == [(1, 0, 0.0), (1, 1, 0.0)]


def test_recast_plan_gives_one_pair_per_usable_group():
    a = group([0.0, 1.0, 0.0], [-1.0, -2.0, -3.0], 0)  # p* 1, n* 0
    b = group([1.0, 1.0], [-1.0, -2.0], 1)  # no negative
    c = group([0.0, 0.0], [-1.0, -2.0], 2)  # no positive
    d = group([0.0, 0.0, 0.5, 0.0], [-4.0, -0.5, -1.0, -0.2], 3)  # p* 2, n* 3 (-0.2)
    e = group([], [], 4)  # no positive
    plan = recast_plan([a, b, c, d, e])
    assert rows(plan) == [(0, 1, 1.0), (0, 0, -1.0), (3, 2, 1.0), (3, 3, -1.0)]
    assert plan.pairs == [(0, 1), (2, 3)]
    for p, n in plan.pairs:
        assert plan.rows[p].advantage == 1.0 and plan.rows[n].advantage == -1.0
        assert plan.rows[p].group == plan.rows[n].group
    assert plan.skipped == {"no_positive": 2, "no_negative": 1}
    assert plan.groups_used == 2


def test_recast_plan_pg_keeps_pairs_whose_positive_already_leads():
    g = group([1.0, 0.0], [-1.0, -2.0], 0)  # positive ahead by 1
    assert rows(recast_plan([g], loss="pg")) == [(0, 0, 1.0), (0, 1, -1.0)]
    assert rows(recast_plan([g], loss="logistic")) == [(0, 0, 1.0), (0, 1, -1.0)]


def test_recast_plan_boundary():
    ahead = group([1.0, 0.0], [-1.0, -2.0], 0)  # -2 + .5 = -1.5 <= -1 -> met
    close = group([1.0, 0.0], [-1.0, -1.25], 1)  # -1.25 + .5 = -.75 > -1 -> kept
    behind = group([0.0, 1.0], [-1.0, -3.0], 2)  # -1 + .5 > -3 -> kept
    tied = group([1.0, 0.0], [-1.0, -1.0], 3)  # margin 0.5: -1 + .5 > -1 -> kept
    plan = recast_plan([ahead, close, behind, tied], loss="boundary", margin=0.5)
    assert rows(plan) == [(1, 0, 1.0), (1, 1, -1.0), (2, 1, 1.0), (2, 0, -1.0), (3, 0, 1.0), (3, 1, -1.0)]
    assert plan.pairs == [(0, 1), (2, 3), (4, 5)]
    assert plan.skipped == {BOUNDARY_MET: 1}
    # margin 0: equal log-probs -> -1 + 0 <= -1 -> met; exactly at the margin counts as met too
    plan = recast_plan([tied, group([1.0, 0.0], [-1.0, -1.5], 4)], loss="boundary", margin=0.5)
    assert rows(plan) == [(0, 0, 1.0), (0, 1, -1.0)]  # -1.5 + .5 = -1 <= -1 -> met
    assert plan.skipped == {BOUNDARY_MET: 1}
    assert recast_plan([tied], loss="boundary").skipped == {BOUNDARY_MET: 1}


def test_recast_plan_mixed_reasons_and_degenerate_batches():
    plan = recast_plan([])
    assert plan == ActorPlan() and plan.groups_used == 0
    assert recast_plan([SINGLE]).skipped == {"no_negative": 1}
    assert recast_plan([ZERO, EMPTY]).skipped == {"no_positive": 2}
    plan = recast_plan([ZERO, HIT])
    assert plan.rows == [ActorRow(1, 1, 1.0), ActorRow(1, 0, -1.0)]  # group index in the step's list
    assert plan.pairs == [(0, 1)]


def test_unknown_contrast_loss_raises():
    with pytest.raises(ValueError):
        recast_plan([HIT], loss="dpo")
    with pytest.raises(ValueError):
        recast_plan([], loss="grpo")


def test_negative_weight_scales_the_negative_and_zero_drops_it_from_the_actor_batch():
    # HIT: p* = member 1 (the only reward), n* = member 0 (highest log-prob among the zeros).
    assert rows(recast_plan([HIT], negative_weight=0.25)) == [(0, 1, 1.0), (0, 0, -0.25)]
    positive_only = recast_plan([HIT, ZERO], negative_weight=0.0)
    assert rows(positive_only) == [(0, 1, 1.0)] and positive_only.pairs == []
    assert positive_only.skipped == {"no_positive": 1}
    with pytest.raises(ValueError, match="negative_weight"):
        recast_plan([HIT], negative_weight=1.5)
    with pytest.raises(ValueError, match="logistic"):
        recast_plan([HIT], loss="logistic", negative_weight=0.5)
