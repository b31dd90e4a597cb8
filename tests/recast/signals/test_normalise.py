"""Group-normalised advantages and ReRe's ranking reward, against hand arithmetic."""

import math

import pytest

from recast.signals.normalise import group_normalised, ranking_penalties, with_ranking_reward

EPS = 1e-6


def test_single_hit_group():
    # r = [1, 0, 0, 0]: mean 0.25; squares .5625 + 3 * .0625 = .75; / (4 - 1) = .25; std .5
    # A = .75 / .500001, -.25 / .500001
    a = group_normalised([1.0, 0.0, 0.0, 0.0])
    assert a == pytest.approx([0.75 / 0.500001] + [-0.25 / 0.500001] * 3, abs=1e-9)
    assert a[0] == pytest.approx(1.5, abs=1e-5)


def test_two_member_group_is_plus_minus_one_over_sqrt2():
    # r = [1, 0]: mean .5, squares .25 + .25 = .5, / 1 -> std sqrt(.5) = .70711; A = +-.5 / .70711 = +-.70711
    a = group_normalised([1.0, 0.0])
    assert a == pytest.approx([0.5 / (math.sqrt(0.5) + EPS), -0.5 / (math.sqrt(0.5) + EPS)], abs=1e-9)


def test_graded_rewards():
    # r = [1, .5, .25, 0]: sum 1.75, mean .4375; deviations .5625, .0625, -.1875, -.4375
    # squares .31640625 + .00390625 + .03515625 + .19140625 = .546875; / 3 = .18229167; std = .42695628
    std = math.sqrt(0.546875 / 3)
    a = group_normalised([1.0, 0.5, 0.25, 0.0])
    assert a == pytest.approx([d / (std + EPS) for d in (0.5625, 0.0625, -0.1875, -0.4375)], abs=1e-9)
    assert a[0] == pytest.approx(1.31748, abs=1e-4)  # .5625 / .42695628


def test_degenerate_groups_have_zero_advantage():
    assert group_normalised([0.0, 0.0, 0.0]) == [0.0, 0.0, 0.0]  # all-zero
    assert group_normalised([1.0, 1.0]) == [0.0, 0.0]  # all-positive, equal: std 0, (1 - 1) / 1e-6 = 0
    assert group_normalised([0.5, 0.5, 0.5]) == [0.0, 0.0, 0.0]  # ties on a graded reward
    assert group_normalised([1.0]) == [0.0]  # single candidate: no spread
    assert group_normalised([0.25]) == [0.0]
    assert group_normalised([]) == []  # empty


def test_ranking_penalties():
    # weights 1/log2(i + 2): 1, 1/log2(3) = .6309298, 1/log2(4) = .5, 1/log2(5) = .4306766
    w = [1.0, 1 / math.log2(3), 0.5, 1 / math.log2(5)]
    total = sum(w)  # 2.5616064
    assert total == pytest.approx(2.5616064, abs=1e-6)
    assert ranking_penalties(4) == pytest.approx([-x / total for x in w], abs=1e-12)
    assert ranking_penalties(1) == [-1.0]  # 1 / 1
    assert ranking_penalties(0) == []
    assert sum(ranking_penalties(7)) == pytest.approx(-1.0)  # weights normalised to sum 1


def test_ranking_reward_only_penalises_negatives_of_groups_with_a_hit():
    # width 3: weights 1, .6309298, .5; total 2.1309298
    total = 1 + 1 / math.log2(3) + 0.5
    out = with_ranking_reward([0.0, 1.0, 0.0])
    assert out == pytest.approx([-1 / total, 1.0, -0.5 / total], abs=1e-12)
    assert out == pytest.approx([-0.469278, 1.0, -0.234639], abs=1e-6)
    # graded hits keep their reward; only the zero-reward member (rank 3) gets a penalty
    total4 = 1 + 1 / math.log2(3) + 0.5 + 1 / math.log2(5)
    out = with_ranking_reward([0.25, 0.0, 0.5, 1.0])
    assert out == pytest.approx([0.25, -(1 / math.log2(3)) / total4, 0.5, 1.0], abs=1e-12)


def test_ranking_reward_leaves_degenerate_groups_alone():
    assert with_ranking_reward([0.0, 0.0, 0.0]) == [0.0, 0.0, 0.0]
    assert with_ranking_reward([1.0, 0.5]) == [1.0, 0.5]  # all positive: no negatives to penalise
    assert with_ranking_reward([1.0]) == [1.0]
    assert with_ranking_reward([0.0]) == [0.0]
    assert with_ranking_reward([]) == []
    rewards = [0.0, 1.0]
    assert with_ranking_reward(rewards) is not rewards and rewards == [0.0, 1.0]  # no mutation
