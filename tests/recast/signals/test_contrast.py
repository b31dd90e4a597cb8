"""ReCast contrast pair selection on degenerate and tied groups."""

from recast.signals.contrast import NO_NEGATIVE, NO_POSITIVE, ContrastPair, select_pair
from recast.signals.groups import RolloutGroup


def group(rewards, logps, gid=0):
    return RolloutGroup(gid, list(range(100, 100 + len(rewards))), list(logps), list(rewards))


def test_strongest_positive_against_the_hardest_negative():
    # positives: member 1 (r 1.0); negatives: 0 (-1.0), 2 (-0.5), 3 (-3.0) -> hardest is 2
    assert select_pair(group([0.0, 1.0, 0.0, 0.0], [-1.0, -2.0, -0.5, -3.0], gid=4)) == ContrastPair(4, 1, 2)


def test_graded_rewards_pick_the_highest_reward_not_the_likeliest_positive():
    # rewards 0.25 (lp -0.1), 0.5 (lp -0.2), 1.0 (lp -5.0), 0 (lp -1.0) -> p* = 2 (r 1.0), n* = 3
    assert select_pair(group([0.25, 0.5, 1.0, 0.0], [-0.1, -0.2, -5.0, -1.0])) == ContrastPair(0, 2, 3)
    # without the 1.0: 0.5 beats 0.25 despite lower log-prob
    assert select_pair(group([0.25, 0.5, 0.0], [-0.1, -0.2, -1.0])) == ContrastPair(0, 1, 2)


def test_equal_rewards_break_ties_by_log_probability():
    # two hits with reward 1: -3.0 < -1.5 -> member 2
    assert select_pair(group([1.0, 0.0, 1.0, 0.0], [-3.0, -2.0, -1.5, -2.5])) == ContrastPair(0, 2, 1)


def test_exact_ties_keep_the_better_beam_rank():
    # equal rewards and equal log-probs among positives (0, 2) and among negatives (1, 3)
    assert select_pair(group([1.0, 0.0, 1.0, 0.0], [-2.0, -1.0, -2.0, -1.0])) == ContrastPair(0, 0, 1)
    # every member has the same log-prob
    assert select_pair(group([0.0, 0.0, 0.5, 0.5], [-1.0] * 4)) == ContrastPair(0, 2, 0)


def test_groups_without_a_contrast():
    assert select_pair(group([0.0, 0.0, 0.0], [-1.0, -2.0, -3.0])) == NO_POSITIVE  # all-zero
    assert select_pair(group([], [])) == NO_POSITIVE  # empty
    assert select_pair(group([0.0], [-1.0])) == NO_POSITIVE  # single negative
    assert select_pair(group([1.0], [-1.0])) == NO_NEGATIVE  # single positive
    assert select_pair(group([1.0, 0.5, 0.25], [-1.0, -2.0, -3.0])) == NO_NEGATIVE  # all positive


def test_negative_rewards_count_as_negatives():
    # a ReRe-penalised reward (< 0) is a negative; 0.0 and -0.3 both <= 0
    assert select_pair(group([-0.3, 1.0, 0.0], [-0.5, -2.0, -1.0])) == ContrastPair(0, 1, 0)
