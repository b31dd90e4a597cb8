"""Signal strategies: which (prompt, item) rows enter the actor update, with which terms.

A step's groups fall in two kinds: groups repair gave an anchor (``group.injected``
set) and the rest (rolled-out groups, with or without a hit). ``build_plan`` hands
each group to the signal its kind is configured with (``SignalSpec.hits`` /
``SignalSpec.anchors``), looked up in a registry:

* ``group_normalised``: every member, A = (r - mean) / std (the OpenOneRec-RL / GRPO
  baseline; optionally ReRe's ranking reward). A flat group stays in the batch with
  A = 0, as the literal baseline computes it.
* ``pair``: ReCast's contrast, p* against n* with +1 / -1 (``contrast_loss``:
  ``pg`` literal, ``boundary`` drops a pair whose positive leads by ``margin``,
  ``logistic`` the reference-anchored pairwise loss); ``negative_weight`` 0 keeps
  the positive alone.
* ``above`` (hits): p* against *every* member ranked above it that earns less,
  reference-anchored pairwise logistic, rank-weighted; nothing once p* leads.
* ``boundary`` (anchors): the anchor against the W-th candidate it displaced (the
  entry boundary of the list) with a hinge that stops once it is inside by
  ``hinge_margin``, weighted by its reachability.
* ``supervised`` (anchors): +w on the anchor alone (a cross-entropy step, since the
  PPO ratio is 1), w = ``anchor_weight`` x reachability.
* ``none``: the group teaches nothing.

Every row carries its *part* (hit, anchor, replay, zero), so the update can measure
and cap each part's gradient. All pure: plain data in, plain data out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from recast.signals.anchors import reachability
from recast.signals.contrast import ContrastPair, negatives_above, select_pair, strongest_positive
from recast.signals.groups import RolloutGroup
from recast.signals.normalise import group_normalised, with_ranking_reward

if TYPE_CHECKING:
    from recast.signals.spec import SignalSpec

CONTRAST_LOSSES = ("pg", "boundary", "logistic")
BOUNDARY_MET = "boundary_met"
LEADS = "positive_leads"
HIT, ANCHOR, REPLAY, ZERO = "hit", "anchor", "replay", "zero"
PARTS = (HIT, ANCHOR, REPLAY, ZERO)
LOGISTIC, HINGE = "logistic", "hinge"


@dataclass(frozen=True)
class ActorRow:
    group: int  # index of the row's prompt: the step's groups first, then replay windows
    item: int  # catalog position whose SID tokens are scored
    advantage: float  # the PPO-clip weight; 0 for rows that only enter pair terms (and the KL)
    part: str = HIT


@dataclass(frozen=True)
class PairTerm:
    positive: int  # row indices into ActorPlan.rows
    negative: int
    weight: float
    kind: str  # logistic: -log sigmoid(tau [(lp+ - ref+) - (lp- - ref-)]); hinge: relu(margin - (lp+ - lp-))
    margin: float = 0.0


@dataclass
class ActorPlan:
    rows: list[ActorRow] = field(default_factory=list)
    pairs: list[PairTerm] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> groups

    @property
    def groups_used(self) -> int:
        return len({r.group for r in self.rows if r.part != REPLAY})

    def add(self, group: int, item: int, advantage: float, part: str) -> int:
        self.rows.append(ActorRow(group, item, advantage, part))
        return len(self.rows) - 1


SignalFn = Callable[[ActorPlan, int, RolloutGroup, "SignalSpec", str], None]


def normalised_signal(plan: ActorPlan, gi: int, group: RolloutGroup, spec: SignalSpec, part: str) -> None:
    rewards = with_ranking_reward(group.rewards) if spec.ranking_reward else group.rewards
    if group.flat:
        part = ZERO
        plan.skipped["zero_advantage"] += 1  # still computed unless skip_flat: the literal baseline's cost
        if spec.skip_flat:
            return
    for member, adv in enumerate(group_normalised(rewards)):
        plan.add(gi, group.items[member], adv, part)


def pair_signal(plan: ActorPlan, gi: int, group: RolloutGroup, spec: SignalSpec, part: str) -> None:
    pair = select_pair(group)
    if not isinstance(pair, ContrastPair):
        plan.skipped[pair] += 1
        return
    if (
        spec.contrast_loss == "boundary"
        and group.logprobs[pair.negative] + spec.margin <= group.logprobs[pair.positive]
    ):
        plan.skipped[BOUNDARY_MET] += 1
        return
    weight = spec.anchor_weight if part == ANCHOR else 1.0
    if spec.negative_weight == 0.0:  # positive only: the negative never enters the actor pass
        plan.add(gi, group.items[pair.positive], weight, part)
    elif spec.contrast_loss == "logistic":
        p = plan.add(gi, group.items[pair.positive], 0.0, part)
        n = plan.add(gi, group.items[pair.negative], 0.0, part)
        plan.pairs.append(PairTerm(p, n, weight, LOGISTIC))
    else:
        plan.add(gi, group.items[pair.positive], weight, part)
        plan.add(gi, group.items[pair.negative], -spec.negative_weight * weight, part)


def above_signal(plan: ActorPlan, gi: int, group: RolloutGroup, spec: SignalSpec, part: str) -> None:
    positive = strongest_positive(group)
    if positive is None:
        plan.skipped["no_positive"] += 1
        return
    negatives = negatives_above(group, positive)
    if not negatives:
        plan.skipped[LEADS] += 1  # p* already tops every lower-reward member: stop
        return
    p = plan.add(gi, group.items[positive], 0.0, part)
    for member, weight in negatives:
        n = plan.add(gi, group.items[member], 0.0, part)
        plan.pairs.append(PairTerm(p, n, weight, LOGISTIC))


def anchor_weight(group: RolloutGroup, spec: SignalSpec) -> float:
    """``anchor_weight`` x reachability of the injected anchor below the candidate it displaced."""
    if group.displaced is None or group.injected is None:
        return spec.anchor_weight
    gap = group.displaced[1] - group.logprobs[group.injected]
    return spec.anchor_weight * reachability(gap, spec.reach_temperature)


def boundary_signal(plan: ActorPlan, gi: int, group: RolloutGroup, spec: SignalSpec, part: str) -> None:
    if group.injected is None or group.displaced is None:
        plan.skipped["no_anchor"] += 1
        return
    a = plan.add(gi, group.items[group.injected], 0.0, part)
    d = plan.add(gi, group.displaced[0], 0.0, part)
    plan.pairs.append(PairTerm(a, d, anchor_weight(group, spec), HINGE, spec.hinge_margin))


def supervised_signal(plan: ActorPlan, gi: int, group: RolloutGroup, spec: SignalSpec, part: str) -> None:
    if group.injected is None:
        plan.skipped["no_anchor"] += 1
        return
    plan.add(gi, group.items[group.injected], anchor_weight(group, spec), part)


def no_signal(plan: ActorPlan, gi: int, group: RolloutGroup, spec: SignalSpec, part: str) -> None:
    plan.skipped["unused"] += 1


HIT_SIGNALS: dict[str, SignalFn] = {
    "group_normalised": normalised_signal,
    "pair": pair_signal,
    "above": above_signal,
    "none": no_signal,
}
ANCHOR_SIGNALS: dict[str, SignalFn] = {
    "group_normalised": normalised_signal,
    "pair": pair_signal,
    "boundary": boundary_signal,
    "supervised": supervised_signal,
    "none": no_signal,
}


def build_plan(groups: list[RolloutGroup], spec: SignalSpec) -> ActorPlan:
    """The actor plan of a step: each group through the signal of its kind (see module doc).

    >>> from recast.signals.spec import SignalSpec
    >>> hit = RolloutGroup(0, [1, 2, 3], [-1.0, -2.0, -3.0], [0.0, 0.0, 1.0])
    >>> plan = build_plan([hit], SignalSpec(hits="above", anchors="none"))
    >>> [(r.item, r.part) for r in plan.rows], [(p.positive, p.negative, round(p.weight, 4)) for p in plan.pairs]
    ([(3, 'hit'), (1, 'hit'), (2, 'hit')], [(0, 1, 0.6131), (0, 2, 0.3869)])
    """
    plan = ActorPlan()
    for gi, group in enumerate(groups):
        if group.injected is not None:
            ANCHOR_SIGNALS[spec.anchors](plan, gi, group, spec, ANCHOR)
        else:
            HIT_SIGNALS[spec.hits](plan, gi, group, spec, HIT)
    return plan


def add_replay(plan: ActorPlan, first: int, items: list[int], weight: float) -> None:
    """Supervised rows for replayed older windows; their prompts follow the step's groups."""
    for k, item in enumerate(items):
        plan.add(first + k, item, weight, REPLAY)
