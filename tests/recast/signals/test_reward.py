"""The reward registry: exact and structural rewards, by hand."""

import pytest

from recast.signals.groups import build_groups
from recast.signals.reward import REWARDS, exact_rewards, get_reward, structural_rewards

CODES = [(1, 2, 3, 0), (1, 2, 3, 1), (1, 2, 7, 0), (1, 9, 9, 0), (4, 2, 3, 0)]  # item 1 shares item 0's SID


def test_exact_pays_only_the_positive_items():
    assert exact_rewards([0, 1, 2], {1: 0.5}, CODES) == [0.0, 0.5, 0.0]


def test_structural_grades_near_misses_by_the_shared_sid_prefix():
    # item 0 exact; 1 same SID (another listing): two codes at least -> .1; 2 two codes; 3 one code; 4 none
    assert structural_rewards([0, 1, 2, 3, 4], {0: 1.0}, CODES) == [1.0, 0.1, 0.1, 0.01, 0.0]
    # the weight multiplies, the best positive counts: vs item 2 (w .5) item 0 shares two codes -> .05
    assert structural_rewards([0, 3], {2: 0.5, 4: 1.0}, CODES) == pytest.approx([0.05, 0.005])
    assert structural_rewards([3], {}, CODES) == [0.0]


def test_a_structural_group_is_graded_but_still_missed():
    groups = build_groups([[2, 3, 4]], [[-1.0, -2.0, -3.0]], [{0: 1.0}], reward=structural_rewards, codes=CODES)
    g = groups[0]
    assert g.rewards == [0.1, 0.01, 0.0] and g.hit_mask == [False, False, False]
    assert g.all_zero and not g.flat  # no positive among the members, yet a graded signal


def test_unknown_reward_fails_listing_the_valid_ones():
    assert get_reward("structural") is structural_rewards and set(REWARDS) == {"exact", "structural"}
    with pytest.raises(ValueError, match="exact"):
        get_reward("ndcg")
