import math

import pytest

from recast.metrics import hit_rate, ndcg, rank_of, summarize

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
