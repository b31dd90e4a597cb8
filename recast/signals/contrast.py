"""ReCast contrast: one strongest positive against one hardest negative per group.

p* is the member with the highest reward (ties: highest log-probability); n* is the
zero-reward member with the highest log-probability, the negative the policy finds
most plausible. They get advantages +1 and -1 and every other member leaves the
actor batch, so the update width is 2 whatever the search width W: that is where
ReCast's actor-side speed-up comes from. A group without a positive (all-zero and
unrepaired) or without a negative (every member a hit) teaches no contrast and is
skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from recast.signals.groups import RolloutGroup

NO_POSITIVE = "no_positive"
NO_NEGATIVE = "no_negative"


@dataclass(frozen=True)
class ContrastPair:
    group_id: int
    positive: int  # member index of p*
    negative: int  # member index of n*


def select_pair(group: RolloutGroup) -> ContrastPair | str:
    """The (p*, n*) pair of a group, or the reason it has none.

    >>> g = RolloutGroup(0, [5, 6, 7, 8], [-1.0, -2.0, -0.5, -3.0], [0.0, 1.0, 0.0, 0.5])
    >>> select_pair(g)
    ContrastPair(group_id=0, positive=1, negative=2)
    """
    positives = [j for j in range(group.size) if group.rewards[j] > 0]
    if not positives:
        return NO_POSITIVE
    negatives = [j for j in range(group.size) if group.rewards[j] <= 0]
    if not negatives:
        return NO_NEGATIVE
    # max() keeps the first of equal keys, i.e. the better beam rank on exact ties.
    positive = max(positives, key=lambda j: (group.rewards[j], group.logprobs[j]))
    negative = max(negatives, key=lambda j: group.logprobs[j])
    return ContrastPair(group.group_id, positive, negative)


def rank_weight(rank: int) -> float:
    """DCG's discount 1/log2(rank + 2) for a 0-based rank: the top of the list counts most.

    >>> [round(rank_weight(r), 4) for r in (0, 1, 3)]
    [1.0, 0.6309, 0.4307]
    """
    return 1.0 / math.log2(rank + 2)


def strongest_positive(group: RolloutGroup) -> int | None:
    """p*: the member with the highest reward, ties broken by log-probability, then beam rank."""
    positives = [j for j in range(group.size) if group.rewards[j] > 0]
    return max(positives, key=lambda j: (group.rewards[j], group.logprobs[j])) if positives else None


def negatives_above(group: RolloutGroup, positive: int) -> list[tuple[int, float]]:
    """Every member the policy ranks above p* that earns less, with its pair weight.

    A member ranks above p* when its log-probability is higher (beam order). Its weight is
    the rank weight of its beam position, times (r* - r) / r* (1 for a zero-reward member, less
    for a near miss under a graded reward), normalised so the weights of a group sum to 1: a
    group teaches one unit whatever p*'s rank. An empty list means p* already leads.

    >>> g = RolloutGroup(0, [1, 2, 3, 4], [-1.0, -2.0, -3.0, -4.0], [0.0, 0.0, 1.0, 0.0])
    >>> [(j, round(w, 4)) for j, w in negatives_above(g, 2)]  # weights 1 and .6309, over 1.6309
    [(0, 0.6131), (1, 0.3869)]
    >>> negatives_above(RolloutGroup(0, [1, 2], [-1.0, -2.0], [1.0, 0.0]), 0)
    []
    """
    top = group.rewards[positive]
    above = [
        (j, rank_weight(j) * (top - group.rewards[j]) / top)
        for j in range(group.size)
        if group.logprobs[j] > group.logprobs[positive] and group.rewards[j] < top
    ]
    total = sum(w for _, w in above)
    return [(j, w / total) for j, w in above] if total > 0 else []
