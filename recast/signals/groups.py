"""Rollout groups: the W candidates beam search produced for one context, with rewards.

A group is plain data so every signal can be unit-tested with hand-written numbers.
Members are kept in beam order (best first); ``logprobs`` are sequence
log-probabilities under the policy that rolled out (beam scores equal teacher-forced
log-probabilities, see ``recast.beam``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recast.signals.reward import Codes, RewardFn, exact_rewards

# Where a repair anchor came from: the held-out next item offline, or the strongest off-list outcome online.
ANCHOR_SOURCES = ("offline_target", "organic_purchase", "organic_add_to_cart", "organic_click")


@dataclass(frozen=True)
class Anchor:
    """A known positive for a context that the rollout may have missed.

    Offline it is the held-out next item (``offline_target``); online an item the user
    engaged with that was not on the served list (``organic_<outcome type>``, its strongest outcome).
    """

    item: int
    source: str = "offline_target"

    def __post_init__(self) -> None:
        if self.source not in ANCHOR_SOURCES:
            raise ValueError(f"anchor source must be one of {ANCHOR_SOURCES}, got {self.source!r}")


@dataclass
class RolloutGroup:
    group_id: int
    items: list[int]  # catalog positions, beam order
    logprobs: list[float]
    rewards: list[float]
    segment: str = ""
    anchors: tuple[Anchor, ...] = ()
    injected: int | None = None  # member index of an injected anchor (set by repair)
    # Which members are positives themselves (exact hits). None: every member with a reward > 0,
    # which is the same thing under the exact reward; a graded reward also pays near misses.
    hit_mask: list[bool] | None = field(default=None)
    displaced: tuple[int, float] | None = None  # (item, log-prob) of the candidate repair replaced

    def __post_init__(self) -> None:
        if not (len(self.items) == len(self.logprobs) == len(self.rewards)):
            raise ValueError("items, logprobs and rewards must have one entry per member")
        if len(set(self.items)) != len(self.items):
            raise ValueError(f"group {self.group_id}: members must be distinct items")
        if self.hit_mask is None:
            self.hit_mask = [r > 0 for r in self.rewards]
        elif len(self.hit_mask) != len(self.items):
            raise ValueError("hit_mask must have one entry per member")

    @property
    def size(self) -> int:
        return len(self.items)

    @property
    def hits(self) -> int:
        """Members that are positives (exact hits), whatever the reward pays near misses."""
        return sum(self.hit_mask)

    @property
    def all_zero(self) -> bool:
        """No member is a positive: the rollout missed (repair's trigger)."""
        return self.hits == 0

    @property
    def flat(self) -> bool:
        """Every member earns the same reward: group normalisation gives all of them 0."""
        return len(set(self.rewards)) <= 1


def reward_of(item: int, positives: dict[int, float]) -> float:
    """The verifiable reward: the weight of ``item`` in the positive set, else 0.

    >>> reward_of(7, {7: 1.0, 9: 0.25}), reward_of(8, {7: 1.0})
    (1.0, 0.0)
    """
    return float(positives.get(item, 0.0))


def build_groups(
    items: list[list[int]],
    logprobs: list[list[float]],
    positives: list[dict[int, float]],
    anchors: list[tuple[Anchor, ...]] | None = None,
    segments: list[str] | None = None,
    first_id: int = 0,
    reward: RewardFn = exact_rewards,
    codes: Codes = (),
) -> list[RolloutGroup]:
    """One group per context from beam output (rows of items and scores, best first).

    Negative item ids (a beam that ran out of catalog) are dropped, so a group may
    hold fewer than W members. ``reward`` (``recast.signals.reward``) pays each member;
    ``codes`` are the catalog's SID codes, for rewards that read them.
    """
    groups = []
    for row, (row_items, row_logps) in enumerate(zip(items, logprobs)):
        kept = [(i, lp) for i, lp in zip(row_items, row_logps) if i >= 0]
        members = [i for i, _ in kept]
        groups.append(
            RolloutGroup(
                group_id=first_id + row,
                items=members,
                logprobs=[lp for _, lp in kept],
                rewards=reward(members, positives[row], codes),
                segment="" if segments is None else segments[row],
                anchors=() if anchors is None else tuple(anchors[row]),
                hit_mask=[i in positives[row] for i in members],
            )
        )
    return groups


@dataclass
class GroupStats:
    """Shares over a batch of groups, measured on the rollout (before repair)."""

    groups: int = 0
    all_zero: float = 0.0  # no member is a positive
    flat: float = 0.0  # every member earns the same reward (equal to all_zero under the exact reward)
    single_hit: float = 0.0
    multi_hit: float = 0.0
    mean_reward: float = 0.0
    members: int = 0


def group_stats(groups: list[RolloutGroup]) -> GroupStats:
    """
    >>> s = group_stats([RolloutGroup(0, [1, 2], [-1.0, -2.0], [0.0, 0.0]),
    ...                  RolloutGroup(1, [3, 4], [-1.0, -2.0], [1.0, 0.0])])
    >>> s.all_zero, s.single_hit, s.mean_reward
    (0.5, 0.5, 0.25)
    """
    n = len(groups)
    if n == 0:
        return GroupStats()
    members = sum(g.size for g in groups)
    return GroupStats(
        groups=n,
        all_zero=sum(g.hits == 0 for g in groups) / n,
        flat=sum(g.flat for g in groups) / n,
        single_hit=sum(g.hits == 1 for g in groups) / n,
        multi_hit=sum(g.hits > 1 for g in groups) / n,
        mean_reward=sum(sum(g.rewards) for g in groups) / max(members, 1),
        members=members,
    )
