"""Signal strategies: which members of which groups enter the actor update, and with
what advantage. The RL loop around them is the same for every strategy.

* ``grpo``: the group-normalised baseline. Every member of every group enters the
  update (as OpenOneRec-RL does), all-zero groups included with advantage 0.
* ``recast``: the contrast pair only, +1 / -1 (``negative_weight`` scales the -1; 0
  keeps the positive alone, an ablation of the contrast half). With ``loss="boundary"`` a pair whose
  positive already leads its negative by ``margin`` (in log-probability) is dropped
  before the actor pass, so the top negative is pushed down only while it outranks
  the positive; with ``loss="logistic"`` the pair feeds the reference-anchored
  pairwise loss instead of the policy-gradient one.

Repair (``recast.signals.repair``) runs before either strategy; it is a separate
switch so "group-normalised + repair" can be measured as its own arm.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from recast.signals.contrast import ContrastPair, select_pair
from recast.signals.groups import RolloutGroup
from recast.signals.normalise import group_normalised, with_ranking_reward

METHODS = ("recast", "grpo")
CONTRAST_LOSSES = ("pg", "boundary", "logistic")
BOUNDARY_MET = "boundary_met"


@dataclass(frozen=True)
class ActorRow:
    group: int  # index into the step's group list
    member: int  # member index inside that group
    advantage: float


@dataclass
class ActorPlan:
    rows: list[ActorRow] = field(default_factory=list)
    # For the pairwise loss: (row index of p*, row index of n*) per pair.
    pairs: list[tuple[int, int]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> groups

    @property
    def groups_used(self) -> int:
        return len({r.group for r in self.rows})


def grpo_plan(groups: list[RolloutGroup], ranking_reward: bool = False) -> ActorPlan:
    """Every member, group-normalised advantages (optionally on ReRe-ranked rewards).

    >>> g = RolloutGroup(0, [1, 2], [-1.0, -2.0], [1.0, 0.0])
    >>> [(r.member, round(r.advantage, 3)) for r in grpo_plan([g]).rows]
    [(0, 0.707), (1, -0.707)]
    """
    plan = ActorPlan()
    for gi, group in enumerate(groups):
        rewards = with_ranking_reward(group.rewards) if ranking_reward else group.rewards
        for member, adv in enumerate(group_normalised(rewards)):
            plan.rows.append(ActorRow(gi, member, adv))
        if group.all_zero:
            plan.skipped["zero_advantage"] += 1  # still computed: the literal baseline's cost
    return plan


def recast_plan(
    groups: list[RolloutGroup], loss: str = "pg", margin: float = 0.0, negative_weight: float = 1.0
) -> ActorPlan:
    """The contrast pair of every group that has one (see module doc for ``loss``).

    >>> a = RolloutGroup(0, [1, 2, 3], [-1.0, -2.0, -3.0], [0.0, 1.0, 0.0])
    >>> b = RolloutGroup(1, [4, 5], [-1.0, -2.0], [1.0, 0.0])  # positive already ahead
    >>> plan = recast_plan([a, b], loss="boundary", margin=0.5)
    >>> [(r.group, r.member, r.advantage) for r in plan.rows], dict(plan.skipped)
    ([(0, 1, 1.0), (0, 0, -1.0)], {'boundary_met': 1})
    """
    if loss not in CONTRAST_LOSSES:
        raise ValueError(f"contrast loss must be one of {CONTRAST_LOSSES}, got {loss!r}")
    if not 0.0 <= negative_weight <= 1.0 or (loss == "logistic" and negative_weight != 1.0):
        raise ValueError("negative_weight must lie in [0, 1], and be 1 with the logistic loss (a pair or nothing)")
    plan = ActorPlan()
    for gi, group in enumerate(groups):
        pair = select_pair(group)
        if not isinstance(pair, ContrastPair):
            plan.skipped[pair] += 1
            continue
        if loss == "boundary" and group.logprobs[pair.negative] + margin <= group.logprobs[pair.positive]:
            plan.skipped[BOUNDARY_MET] += 1
            continue
        if negative_weight == 0.0:  # positive only: the negative never enters the actor pass
            plan.rows.append(ActorRow(gi, pair.positive, 1.0))
            continue
        plan.pairs.append((len(plan.rows), len(plan.rows) + 1))
        plan.rows.append(ActorRow(gi, pair.positive, 1.0))
        plan.rows.append(ActorRow(gi, pair.negative, -negative_weight))
    return plan
