"""Verifiable rewards: what each rolled-out candidate of a group earns.

A reward function takes the group's candidates, the context's positive set
(item -> weight) and the catalog's codes, and returns one reward per candidate.
They are plain functions looked up by name (``get_reward``), so a new reward is a
new entry in ``REWARDS``, never a branch in the trainer.

* ``exact``: the positive's weight when the candidate *is* a positive, else 0 (the
  sparse reward every arm used so far; most groups are all-zero under it).
* ``structural``: the graded reward of the ReCast paper and the OpenOneRec-RL code:
  1 for the exact item, 0.1 when the first two SID codes match a positive's, 0.01
  when only the first code does, times the positive's weight (the best positive
  counts). Most all-zero groups of the exact reward become graded ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

EXACT = 1.0
TWO_CODES = 0.1
ONE_CODE = 0.01

Codes = Sequence[Sequence[int]]  # (N, L): the SID codes of every catalog item
RewardFn = Callable[[list[int], dict[int, float], Codes], list[float]]


def exact_rewards(items: list[int], positives: dict[int, float], codes: Codes) -> list[float]:
    """
    >>> exact_rewards([7, 8, 9], {9: 1.0, 7: 0.25}, [])
    [0.25, 0.0, 1.0]
    """
    return [float(positives.get(i, 0.0)) for i in items]


def prefix_score(candidate: Sequence[int], positive: Sequence[int]) -> float:
    """The structural score of one candidate's codes against one positive's (not the same item).

    >>> prefix_score((1, 2, 3, 0), (1, 2, 9, 0)), prefix_score((1, 5, 3, 0), (1, 2, 3, 0)), prefix_score((4,), (1,))
    (0.1, 0.01, 0.0)
    """
    if candidate[0] != positive[0]:
        return 0.0
    return TWO_CODES if len(candidate) > 1 and candidate[1] == positive[1] else ONE_CODE


def structural_rewards(items: list[int], positives: dict[int, float], codes: Codes) -> list[float]:
    """1 / 0.1 / 0.01 for the exact item / the first two codes / the first code, times the weight.

    >>> codes = [(1, 2, 3), (1, 2, 4), (1, 5, 6), (7, 8, 9)]
    >>> structural_rewards([0, 1, 2, 3], {0: 1.0}, codes)
    [1.0, 0.1, 0.01, 0.0]
    >>> structural_rewards([1], {0: 0.5, 3: 1.0}, codes)  # the best weighted match counts
    [0.05]
    """
    rewards = []
    for item in items:
        if item in positives:
            rewards.append(float(positives[item]) * EXACT)
            continue
        scores = [w * prefix_score(codes[item], codes[p]) for p, w in positives.items()]
        rewards.append(float(max(scores, default=0.0)))
    return rewards


REWARDS: dict[str, RewardFn] = {"exact": exact_rewards, "structural": structural_rewards}


def get_reward(name: str) -> RewardFn:
    try:
        return REWARDS[name]
    except KeyError:
        raise ValueError(f"unknown reward {name!r}; choose one of {sorted(REWARDS)}") from None
