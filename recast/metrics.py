"""Ranking metrics, defined as in MiniOneRec so figures compare with the anchors.

The target's 0-based rank r in a ranked list (None when absent):
HR@K = share of rows with r < K; NDCG@K = mean of 1/log2(r + 2) over rows with
r < K (0 for the rest); Pass@1 = HR@1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DEFAULT_KS = (1, 3, 5, 10)


def rank_of(target: int, ranking: Sequence[int]) -> int | None:
    """0-based position of ``target`` in ``ranking``, None if it is not there."""
    for r, item in enumerate(ranking):
        if item == target:
            return r
    return None


def hit_rate(ranks: Sequence[int | None], k: int) -> float:
    """
    >>> hit_rate([0, 2, None, 9], 3)
    0.5
    """
    return sum(1 for r in ranks if r is not None and r < k) / max(len(ranks), 1)


def ndcg(ranks: Sequence[int | None], k: int) -> float:
    """
    >>> round(ndcg([0, 1, None], 2), 6)  # (1 + 1/log2(3) + 0) / 3
    0.543643
    """
    return sum(1.0 / math.log2(r + 2) for r in ranks if r is not None and r < k) / max(len(ranks), 1)


def summarize(ranks: Sequence[int | None], ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """HR@K and NDCG@K for every K, Pass@1, and the row count."""
    out: dict[str, float] = {"rows": len(ranks)}
    for k in ks:
        out[f"HR@{k}"] = hit_rate(ranks, k)
        out[f"NDCG@{k}"] = ndcg(ranks, k)
    out["Pass@1"] = hit_rate(ranks, 1)
    return out


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of a - b over paired rows and its 95% percentile-bootstrap interval.

    ``a`` and ``b`` are per-row scores of two rankers on the same rows (e.g. hit@1 as
    0/1). On a few hundred rows a Pass@1 difference of a few hits is noise; the
    interval says so.

    >>> paired_bootstrap([1, 1, 0, 1], [0, 1, 0, 0])[0]
    0.5
    """
    import random

    if len(a) != len(b) or not a:
        raise ValueError("need two equally long, non-empty score lists")
    diffs = [x - y for x, y in zip(a, b)]
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return sum(diffs) / n, means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def per_entry_scores(ranks: Sequence[int | None], metric: str) -> list[float]:
    """One score per entry for ``Pass@1``, ``HR@K`` or ``NDCG@K``: the terms their means average.

    >>> per_entry_scores([0, 2, None], "HR@3"), [round(x, 4) for x in per_entry_scores([0, 2, None], "NDCG@3")]
    ([1.0, 1.0, 0.0], [1.0, 0.5, 0.0])
    """
    if metric == "Pass@1":
        metric = "HR@1"
    name, k = metric.split("@")
    k = int(k)
    if name == "HR":
        return [1.0 if r is not None and r < k else 0.0 for r in ranks]
    if name == "NDCG":
        return [1.0 / math.log2(r + 2) if r is not None and r < k else 0.0 for r in ranks]
    raise ValueError(f"unknown metric {metric!r}; use Pass@1, HR@K or NDCG@K")


def pooled_entry_scores(rankings: Sequence[Sequence[int | None]], metric: str) -> list[float]:
    """Each entry's :func:`per_entry_scores` averaged over several rankings of the same entries (seeds, runs).

    >>> pooled_entry_scores([[0, None], [5, 1]], "HR@3")
    [0.5, 0.5]
    """
    return [sum(col) / len(col) for col in zip(*(per_entry_scores(r, metric) for r in rankings), strict=True)]


def clustered_bootstrap(
    diffs: Sequence[float], clusters: Sequence[str], resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of per-entry differences and its 95% percentile interval, resampling whole clusters.

    The windows of one user are not independent (they share a history), so the unit
    resampled is the user: each resample draws as many users as there are, with
    replacement, and takes the mean over all their entries. With one entry per
    cluster this is the plain paired bootstrap.

    >>> clustered_bootstrap([1.0, 1.0, 0.0, 0.0], ["a", "a", "b", "b"])[0]
    0.5
    """
    import numpy as np

    if len(diffs) != len(clusters) or not diffs:
        raise ValueError("need one cluster per difference, and at least one")
    names = {c: i for i, c in enumerate(dict.fromkeys(clusters))}
    index = np.array([names[c] for c in clusters])
    sums = np.bincount(index, weights=np.asarray(diffs, dtype=float))  # (U,)
    sizes = np.bincount(index).astype(float)  # (U,)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(resamples, len(sums)))  # (R, U)
    means = np.sort(sums[draws].sum(1) / sizes[draws].sum(1))
    return float(np.mean(diffs)), float(means[int(0.025 * resamples)]), float(means[int(0.975 * resamples) - 1])
