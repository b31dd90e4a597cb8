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
