"""Rollout groups, rewards and batch statistics, checked against hand-computed numbers."""

import pytest

from recast.signals.groups import Anchor, GroupStats, RolloutGroup, build_groups, group_stats, reward_of


def test_anchor_sources_are_validated():
    assert Anchor(3).source == "offline_target"
    assert Anchor(3, "organic_click").source == "organic_click"
    with pytest.raises(ValueError):
        Anchor(3, "served")


def test_group_rejects_ragged_rows_and_duplicate_members():
    with pytest.raises(ValueError):
        RolloutGroup(0, [1, 2], [-1.0], [0.0, 0.0])
    with pytest.raises(ValueError):
        RolloutGroup(0, [1, 2], [-1.0, -2.0], [0.0])
    with pytest.raises(ValueError):
        RolloutGroup(0, [1, 1], [-1.0, -2.0], [0.0, 0.0])


def test_hits_and_all_zero():
    # graded rewards: 0.25 and 1.0 are hits, 0.0 is not -> 2 hits
    g = RolloutGroup(0, [1, 2, 3], [-1.0, -2.0, -3.0], [0.25, 0.0, 1.0])
    assert (g.size, g.hits, g.all_zero) == (3, 2, False)
    z = RolloutGroup(1, [1, 2], [-1.0, -2.0], [0.0, 0.0])
    assert (z.size, z.hits, z.all_zero) == (2, 0, True)
    empty = RolloutGroup(2, [], [], [])
    assert (empty.size, empty.hits, empty.all_zero) == (0, 0, True)
    assert RolloutGroup(3, [9], [-0.1], [0.5]).hits == 1


def test_reward_of_graded_positive_set():
    positives = {7: 1.0, 8: 0.5, 9: 0.25}
    assert reward_of(7, positives) == 1.0
    assert reward_of(8, positives) == 0.5
    assert reward_of(9, positives) == 0.25
    assert reward_of(10, positives) == 0.0
    assert reward_of(7, {}) == 0.0
    assert isinstance(reward_of(7, {7: 1}), float)


def test_build_groups_drops_beams_that_ran_out_and_assigns_rewards():
    items = [[5, 3, -1, -1], [0, 1, 2, 4]]
    logps = [[-0.5, -1.5, float("-inf"), float("-inf")], [-1.0, -2.0, -3.0, -4.0]]
    positives = [{3: 1.0}, {2: 0.5, 4: 0.25, 99: 1.0}]
    anchors = [(Anchor(8),), (Anchor(11, "organic_click"), Anchor(12))]
    groups = build_groups(items, logps, positives, anchors=anchors, segments=["new", "old"], first_id=10)
    a, b = groups
    # row 0: the two -1 slots are dropped, item 3 is the held-out positive
    assert (a.group_id, a.items, a.logprobs, a.rewards) == (10, [5, 3], [-0.5, -1.5], [0.0, 1.0])
    assert (a.segment, a.anchors, a.injected) == ("new", (Anchor(8),), None)
    # row 1: graded rewards 0.5 and 0.25; item 99 is positive but was not rolled out
    assert (b.group_id, b.items, b.rewards) == (11, [0, 1, 2, 4], [0.0, 0.0, 0.5, 0.25])
    assert (b.segment, b.anchors) == ("old", (Anchor(11, "organic_click"), Anchor(12)))
    assert b.hits == 2


def test_build_groups_defaults_and_a_beam_with_no_valid_item():
    groups = build_groups([[-1, -1], [4, -1]], [[float("-inf")] * 2, [-0.2, float("-inf")]], [{}, {4: 1.0}])
    empty, single = groups
    assert (empty.group_id, empty.items, empty.logprobs, empty.rewards) == (0, [], [], [])
    assert (empty.segment, empty.anchors, empty.all_zero) == ("", (), True)
    assert (single.group_id, single.items, single.rewards, single.hits) == (1, [4], [1.0], 1)
    assert build_groups([], [], []) == []


def test_group_stats_on_a_mixed_batch():
    groups = [
        RolloutGroup(0, [1, 2, 3, 4], [-1.0, -2.0, -3.0, -4.0], [0.0, 0.0, 0.0, 0.0]),  # all-zero
        RolloutGroup(1, [1, 2, 3, 4], [-1.0, -2.0, -3.0, -4.0], [0.0, 1.0, 0.0, 0.0]),  # single hit
        RolloutGroup(2, [1, 2], [-1.0, -2.0], [0.5, 0.25]),  # two hits (graded)
        RolloutGroup(3, [], [], []),  # empty: counts as all-zero, no members
    ]
    s = group_stats(groups)
    # 4 groups: all-zero {0, 3} = 2/4, single {1} = 1/4, multi {2} = 1/4
    # members 4 + 4 + 2 + 0 = 10; reward sum 0 + 1 + 0.75 + 0 = 1.75 -> 1.75 / 10 = 0.175
    assert s.groups == 4
    assert s.all_zero == pytest.approx(0.5)
    assert s.single_hit == pytest.approx(0.25)
    assert s.multi_hit == pytest.approx(0.25)
    assert s.members == 10
    assert s.mean_reward == pytest.approx(0.175)


def test_group_stats_degenerate_batches():
    assert group_stats([]) == GroupStats()
    s = group_stats([RolloutGroup(0, [], [], [])])
    # one empty group: all-zero share 1/1, no members -> mean reward 0 / max(0, 1) = 0
    assert (s.groups, s.all_zero, s.single_hit, s.multi_hit, s.members, s.mean_reward) == (1, 1.0, 0.0, 0.0, 0, 0.0)
    s = group_stats([RolloutGroup(0, [1, 2], [-1.0, -1.0], [1.0, 1.0])])
    # all-positive: 2 hits -> multi-hit share 1; mean reward (1 + 1) / 2 = 1
    assert (s.all_zero, s.single_hit, s.multi_hit, s.mean_reward) == (0.0, 0.0, 1.0, 1.0)
