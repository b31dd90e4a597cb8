"""The group-normalised baseline (OpenOneRec-RL / GRPO) and ReRe's ranking reward."""

from __future__ import annotations

import math

EPS = 1e-6


def group_normalised(rewards: list[float]) -> list[float]:
    """A_j = (r_j - mean(r)) / (std(r) + 1e-6), std with Bessel's correction as in
    TRL's GRPO trainer. A group of one member has no spread: all advantages 0.

    >>> [round(a, 4) for a in group_normalised([1.0, 0.0, 0.0, 0.0])]  # mean .25, std .5
    [1.5, -0.5, -0.5, -0.5]
    >>> group_normalised([0.0, 0.0, 0.0])  # all-zero: nothing to learn
    [0.0, 0.0, 0.0]
    """
    n = len(rewards)
    if n < 2:
        return [0.0] * n
    mean = sum(rewards) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1))
    return [(r - mean) / (std + EPS) for r in rewards]


def ranking_penalties(width: int) -> list[float]:
    """ReRe's penalty for a negative at beam rank i (0-based): -(1/log2(i+2)) / sum_j 1/log2(j+2).

    >>> [round(p, 4) for p in ranking_penalties(2)]  # 1/(1 + 0.6309), 0.6309/(1.6309)
    [-0.6131, -0.3869]
    """
    weights = [1.0 / math.log2(i + 2) for i in range(width)]
    total = sum(weights)
    return [-w / total for w in weights]


def with_ranking_reward(rewards: list[float]) -> list[float]:
    """Rewards with ReRe's rank penalty on the negatives, only when the group has a hit
    (members are in beam order, so a member's index is its rank).

    >>> [round(r, 4) for r in with_ranking_reward([0.0, 1.0, 0.0])]
    [-0.4693, 1.0, -0.2346]
    >>> with_ranking_reward([0.0, 0.0])
    [0.0, 0.0]
    """
    if not any(r > 0 for r in rewards):
        return list(rewards)
    penalties = ranking_penalties(len(rewards))
    return [r if r > 0 else r + p for r, p in zip(rewards, penalties)]
