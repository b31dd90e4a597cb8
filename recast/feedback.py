"""What a served list taught: its positives, and the one item a next-item learner should predict.

A logged list (one reward group: the context the policy saw, the items it served with their
rewards, and the items the shopper engaged with off the list) is turned into learning signals
here, as plain functions over catalog positions, so the nightly refresh and its tests share
one definition:

- the *positive set* P(x): every served item with a reward, plus every organic item at its
  outcome's weight (an organic purchase is as strong as a purchase of a served item);
- the *target*: the strongest positive, the item a next-item model learns to predict;
- the *anchors* that ReCast's repair can inject: organic positives, strongest first, each with its
  source (the outcome type behind its weight), which the audit reports per segment.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoggedList:
    """One reward group in catalog positions (items outside the catalog are dropped by the reader)."""

    user_id: str
    history: tuple[int, ...]  # oldest first, as the prompt saw it
    served: tuple[int, ...]  # rank order
    rewards: tuple[float, ...]  # one per served item
    organic: tuple[tuple[int, float], ...] = ()  # (item, weight of its strongest outcome), first seen first
    segment: str = "default"
    organic_types: tuple[str, ...] = ()  # the outcome type behind each organic weight, aligned with ``organic``
    request_id: str | None = None  # the reward group's, so what is learned from it can be traced back

    def __post_init__(self) -> None:
        if len(self.served) != len(self.rewards):
            raise ValueError(f"{len(self.served)} served items but {len(self.rewards)} rewards")
        if self.organic_types and len(self.organic_types) != len(self.organic):
            raise ValueError(f"{len(self.organic)} organic items but {len(self.organic_types)} outcome types")


def positives(logged: LoggedList) -> dict[int, float]:
    """P(x): item -> reward; an item both served and found organically keeps its larger reward.

    >>> positives(LoggedList("u", (1,), (5, 6, 7), (0.0, 0.25, 0.0), ((9, 1.0), (6, 0.5))))
    {6: 0.5, 9: 1.0}
    """
    out: dict[int, float] = {}
    for item, reward in zip(logged.served, logged.rewards):
        if reward > 0:
            out[item] = max(out.get(item, 0.0), reward)
    for item, weight in logged.organic:
        if weight > 0:
            out[item] = max(out.get(item, 0.0), weight)
    return dict(sorted(out.items()))


def target(logged: LoggedList) -> int | None:
    """The strongest positive (ties: a served item before an organic one, then the better rank or the
    earlier outcome); None for a list nobody engaged with.

    >>> target(LoggedList("u", (1,), (5, 6), (0.25, 0.25), ((9, 0.25),)))
    5
    >>> target(LoggedList("u", (1,), (5, 6), (0.0, 0.25), ((9, 1.0),)))
    9
    >>> target(LoggedList("u", (1,), (5,), (0.0,))) is None
    True
    """
    ranked = [(-r, 0, i, item) for i, (item, r) in enumerate(zip(logged.served, logged.rewards)) if r > 0]
    ranked += [(-w, 1, i, item) for i, (item, w) in enumerate(logged.organic) if w > 0]
    return min(ranked)[3] if ranked else None


def anchors(logged: LoggedList) -> tuple[int, ...]:
    """Organic positives, strongest first (then first seen): what repair may inject into an all-zero group.

    >>> anchors(LoggedList("u", (1,), (5,), (0.0,), ((8, 0.25), (9, 1.0))))
    (9, 8)
    """
    order = sorted(range(len(logged.organic)), key=lambda i: (-logged.organic[i][1], i))
    return tuple(logged.organic[i][0] for i in order if logged.organic[i][1] > 0)


def anchor_source(logged: LoggedList, item: int) -> str:
    """Where an organic anchor came from: ``organic_<type of its strongest outcome>`` (a click when unknown).

    >>> anchor_source(LoggedList("u", (1,), (5,), (0.0,), ((9, 1.0),), organic_types=("purchase",)), 9)
    'organic_purchase'
    """
    types = dict(zip((i for i, _ in logged.organic), logged.organic_types))
    return f"organic_{types.get(item, 'click')}"
