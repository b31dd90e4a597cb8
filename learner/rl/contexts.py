"""RL contexts: a history, the positives it is rewarded against, and repair anchors.

Offline, every window of an interaction row is a context (each prefix of
``history + [target]`` predicts the next item), de-duplicated per user exactly as
SFT de-duplicates windows. P(x) is the next item (reward 1) and the same item is
the repair anchor (source ``offline_target``). Hits are decided on the
disambiguated item (the catalog position), not on the 3-token SID, so the two
listings of a colliding product are different items, as in evaluation.

The segment is the history length bucket, the offline stand-in for the customer
segment the online path carries on each request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from recast.dataset import Interaction
from recast.signals.groups import Anchor


@dataclass(frozen=True)
class RLContext:
    history: tuple[int, ...]  # catalog positions, oldest first
    positives: dict[int, float]
    anchors: tuple[Anchor, ...]
    segment: str
    request_id: str | None = None  # the reward group it came from (online), so a repair is tied to its group


def history_segment(length: int) -> str:
    """
    >>> [history_segment(n) for n in (1, 2, 3, 5, 6, 10)]
    ['short', 'short', 'medium', 'medium', 'long', 'long']
    """
    return "short" if length <= 2 else "medium" if length <= 5 else "long"


def offline_contexts(rows: Iterable[Interaction], position: dict[str, int], max_history: int) -> list[RLContext]:
    seen: set[tuple[str, tuple[int, ...], int]] = set()
    contexts = []
    for row in rows:
        items = [position[i] for i in row.history] + [position[row.target]]
        for j in range(1, len(items)):
            history = tuple(items[max(0, j - max_history) : j])
            key = (row.user_id, history, items[j])
            if key in seen:
                continue
            seen.add(key)
            anchor = (Anchor(items[j], "offline_target"),)
            contexts.append(RLContext(history, {items[j]: 1.0}, anchor, history_segment(len(history))))
    return contexts
