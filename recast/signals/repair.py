"""ReCast repair: give an all-zero group a known positive to learn from.

Under group normalisation an all-zero group has zero advantage everywhere: it costs
a rollout and an actor pass and teaches nothing. Repair injects a known positive
anchor with reward 1 in place of the lowest-scoring candidate. The anchor's
log-probability comes from teacher forcing under the current policy (the caller
computes it; this module does no model calls). A group with no usable anchor is
*unrepairable* and is left alone for the strategy to skip.

Every decision is returned as a :class:`RepairRecord` so operators can audit which
signals were repaired, per segment.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from recast.signals.groups import Anchor, RolloutGroup

REPAIRED = "repaired"
UNREPAIRABLE = "unrepairable"
NOT_NEEDED = "not_needed"


@dataclass(frozen=True)
class RepairRecord:
    group_id: int
    segment: str
    status: str  # repaired | unrepairable | not_needed
    anchor_item: int | None = None
    anchor_source: str | None = None
    replaced_item: int | None = None  # the candidate the anchor displaced
    replaced_logprob: float | None = None
    anchor_logprob: float | None = None  # how far outside the beam the positive was

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def usable_anchor(group: RolloutGroup) -> Anchor | None:
    """The first anchor not already among the members (a member would already be a hit)."""
    members = set(group.items)
    return next((a for a in group.anchors if a.item not in members), None)


def repair(group: RolloutGroup, anchor_logprob: float | None) -> tuple[RolloutGroup, RepairRecord]:
    """Repair one group. ``anchor_logprob`` is the teacher-forced log-probability of
    ``usable_anchor(group)`` (ignored when the group needs no repair or has none).

    >>> g = RolloutGroup(3, [10, 11, 12], [-1.0, -2.0, -3.0], [0.0, 0.0, 0.0], "new", (Anchor(42),))
    >>> fixed, record = repair(g, -5.5)
    >>> fixed.items, fixed.logprobs, fixed.rewards, fixed.injected, fixed.displaced
    ([10, 11, 42], [-1.0, -2.0, -5.5], [0.0, 0.0, 1.0], 2, (12, -3.0))
    >>> record.status, record.replaced_item
    ('repaired', 12)
    """
    if not group.all_zero:
        return group, RepairRecord(group.group_id, group.segment, NOT_NEEDED)
    anchor = usable_anchor(group)
    if anchor is None or anchor_logprob is None or group.size == 0:
        return group, RepairRecord(group.group_id, group.segment, UNREPAIRABLE)
    # Lowest score; on ties the later (lower beam rank) member, so the result is deterministic.
    worst = min(range(group.size), key=lambda j: (group.logprobs[j], -j))
    items, logprobs, rewards = list(group.items), list(group.logprobs), list(group.rewards)
    record = RepairRecord(
        group.group_id,
        group.segment,
        REPAIRED,
        anchor_item=anchor.item,
        anchor_source=anchor.source,
        replaced_item=items[worst],
        replaced_logprob=logprobs[worst],
        anchor_logprob=float(anchor_logprob),
    )
    displaced = (items[worst], logprobs[worst])  # the entry boundary the anchor has to beat
    hit_mask = list(group.hit_mask)
    items[worst], logprobs[worst], rewards[worst], hit_mask[worst] = anchor.item, float(anchor_logprob), 1.0, True
    fixed = replace(group, items=items, logprobs=logprobs, rewards=rewards, injected=worst, hit_mask=hit_mask,
                    displaced=displaced)  # fmt: skip
    return fixed, record


def needs_anchor_score(group: RolloutGroup) -> Anchor | None:
    """The anchor whose log-probability ``repair`` will need, or None if it needs none."""
    return usable_anchor(group) if group.all_zero and group.size > 0 else None
