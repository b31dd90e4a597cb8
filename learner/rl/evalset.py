"""What an RL run is scored on: every window of the eval users, or one entry per row.

Scoring only the rows of the held-out users leaves most of their data unused (655 rows,
one hit = 0.0015). Every prefix of a row's ``history + [target]`` predicts the item
after it, the same windows SFT trains on and RL learns from, de-duplicated per user
(a user's rows chain, so most windows recur); that is about three times as many
entries. Each entry keeps its user, so intervals can resample users (the windows of
one user are not independent).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from recast.dataset import Interaction


@dataclass
class EvalSet:
    histories: list[list[int]]
    targets: list[int]
    users: list[str] = field(default_factory=list)  # one per entry (empty: unknown)

    def head(self, n: int | None) -> EvalSet:
        if n is None:
            return self
        return EvalSet(self.histories[:n], self.targets[:n], self.users[:n])


def row_entries(rows: Iterable[Interaction], position: dict[str, int]) -> EvalSet:
    """One entry per row: its history predicts its target."""
    rows = list(rows)
    return EvalSet(
        [[position[i] for i in r.history] for r in rows], [position[r.target] for r in rows], [r.user_id for r in rows]
    )


def window_entries(rows: Iterable[Interaction], position: dict[str, int], max_history: int) -> EvalSet:
    """Every window of every row (history cut to ``max_history``), each (user, history, target) once.

    >>> rows = [Interaction("u", ("a", "b"), "c"), Interaction("u", ("a", "b", "c"), "d")]
    >>> e = window_entries(rows, {"a": 0, "b": 1, "c": 2, "d": 3}, max_history=2)
    >>> list(zip(e.histories, e.targets))
    [([0], 1), ([0, 1], 2), ([1, 2], 3)]
    """
    seen: set[tuple[str, tuple[int, ...], int]] = set()
    out = EvalSet([], [], [])
    for row in rows:
        items = [position[i] for i in row.history] + [position[row.target]]
        for j in range(1, len(items)):
            history = tuple(items[max(0, j - max_history) : j])
            key = (row.user_id, history, items[j])
            if key in seen:
                continue
            seen.add(key)
            out.histories.append(list(history))
            out.targets.append(items[j])
            out.users.append(row.user_id)
    return out
