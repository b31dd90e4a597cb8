import math

import pytest

from recast.metrics import hit_rate, ndcg, paired_bootstrap, rank_of, summarize

RANKS = [0, 2, None, 9, 4]


def test_rank_of():
    assert rank_of(7, [3, 7, 9, 7]) == 1
    assert rank_of(3, [3, 7]) == 0
    assert rank_of(5, [3, 7]) is None
    assert rank_of(5, []) is None


def test_hit_rate_and_ndcg_by_hand():
    assert hit_rate(RANKS, 1) == pytest.approx(1 / 5)
    assert hit_rate(RANKS, 3) == pytest.approx(2 / 5)
    assert hit_rate(RANKS, 10) == pytest.approx(4 / 5)
    assert ndcg(RANKS, 1) == pytest.approx(1 / 5)
    assert ndcg(RANKS, 3) == pytest.approx((1 + 0.5) / 5)  # rank 2 -> 1/log2(4)
    assert ndcg(RANKS, 5) == pytest.approx((1 + 0.5 + 1 / math.log2(6)) / 5)
    assert ndcg(RANKS, 10) == pytest.approx((1 + 0.5 + 1 / math.log2(6) + 1 / math.log2(11)) / 5)


def test_absent_targets_count_as_misses():
    assert hit_rate([None, None], 10) == 0.0 and ndcg([None, None], 10) == 0.0
    assert hit_rate([], 10) == 0.0 and ndcg([], 10) == 0.0


def test_summarize():
    out = summarize(RANKS, ks=(1, 5))
    assert out == pytest.approx(
        {"rows": 5, "HR@1": 0.2, "NDCG@1": 0.2, "HR@5": 0.6, "NDCG@5": (1.5 + 1 / math.log2(6)) / 5, "Pass@1": 0.2}
    )


# ---------------------------------------------------------------- the paired bootstrap interval


def test_bootstrap_of_a_constant_difference_is_that_difference_exactly():
    # Every resample of identical differences has the same mean: the interval collapses onto it.
    assert paired_bootstrap([1, 1, 0, 1], [0, 0, -1, 0]) == (1.0, 1.0, 1.0)
    assert paired_bootstrap([0.3], [0.1]) == pytest.approx((0.2, 0.2, 0.2))


def test_bootstrap_is_paired_row_by_row():
    """Two rankers whose scores swing wildly across rows but differ by exactly 1 on every row: the paired
    interval is [1, 1]. Pairing is the point; an unpaired interval here would be wide."""
    b = [float(i % 7) * 3 for i in range(50)]
    a = [x + 1 for x in b]
    assert paired_bootstrap(a, b) == (1.0, 1.0, 1.0)


def test_bootstrap_interval_of_two_rows_by_hand():
    """Differences [0, 1]: a resample of two rows has mean 0, 0.5 or 1 with probability 1/4, 1/2, 1/4, so out
    of 2000 resamples about 500 are 0 and 500 are 1: the 2.5th and 97.5th percentiles are 0 and 1."""
    assert paired_bootstrap([0, 1], [0, 0]) == (0.5, 0.0, 1.0)


def test_bootstrap_interval_matches_the_normal_approximation():
    """400 rows, a difference of 1 on 30% of them: the mean is 0.3 and the bootstrap distribution of the mean
    is close to normal with sd sqrt(0.3 * 0.7 / 400) = 0.0229, so the 95% interval is 0.3 -/+ 1.96 sd
    = [0.255, 0.345] (within a few thousandths: 2000 resamples, percentile granularity)."""
    a = [1.0 if i % 10 < 3 else 0.0 for i in range(400)]
    mean, lo, hi = paired_bootstrap(a, [0.0] * 400)
    sd = math.sqrt(0.3 * 0.7 / 400)
    assert mean == pytest.approx(0.3)
    assert lo == pytest.approx(0.3 - 1.96 * sd, abs=0.006) and hi == pytest.approx(0.3 + 1.96 * sd, abs=0.006)


def test_bootstrap_is_seeded_and_antisymmetric():
    a = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1] * 5
    b = [0, 0, 1, 0, 1, 0, 1, 1, 0, 0] * 5
    assert paired_bootstrap(a, b) == paired_bootstrap(a, b)  # the same seed, the same interval
    mean, lo, hi = paired_bootstrap(a, b)
    assert paired_bootstrap(b, a) == pytest.approx((-mean, -hi, -lo))  # swapping the rankers mirrors it
    assert lo < mean < hi


@pytest.mark.parametrize(("a", "b"), [([], []), ([1, 0], [1]), ([1], [])])
def test_bootstrap_needs_two_equally_long_non_empty_lists(a, b):
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap(a, b)
