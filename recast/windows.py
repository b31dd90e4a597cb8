"""Next-item training windows from interaction rows, and the user-level split.

A row is ``history -> target``. Its full sequence ``history + [target]`` holds one
window per position: every prefix predicts the item after it. A causal LM trained
on the sequence sees all of them in one pass. A user's rows chain (a later row's
history ends with the earlier row's history and target), so the same window shows
up in several rows; each (user, context, target) window gets weight 1 the first
time and 0 after, so no window counts twice and none is lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from recast.dataset import Interaction


@dataclass(frozen=True)
class Sequence:
    """Catalog positions, oldest first; ``weights[j]`` is the weight of predicting ``items[j]``."""

    user_id: str
    items: tuple[int, ...]
    weights: tuple[float, ...]


def build_sequences(rows: Iterable[Interaction], position: dict[str, int], max_history: int) -> list[Sequence]:
    """One sequence per row (history cut to its last ``max_history`` items, as the
    service cuts prompts), de-duplicated windows weighted 0 (see module doc)."""
    seen: set[tuple[str, tuple[int, ...], int]] = set()
    sequences = []
    for row in rows:
        history = row.history[-max_history:]
        items = tuple(position[i] for i in history) + (position[row.target],)
        weights = []
        for j, target in enumerate(items):
            key = (row.user_id, items[:j], target)
            weights.append(0.0 if key in seen else 1.0)
            seen.add(key)
        sequences.append(Sequence(row.user_id, items, tuple(weights)))
    return sequences


def short_context_sequences(
    sequences: Iterable[Sequence], context: int, weight: float, full: bool = False
) -> list[Sequence]:
    """Every counted window again, its context cut to the last ``context`` items, weighted ``weight``;
    ``full``: only the windows whose context holds that many items (a two-item policy's pairs).

    Rows start with long histories, so a policy trained on them alone rarely sees what the last item
    or two predict by themselves, the signal the transition model lives on: the default policy put the
    most frequent successor of an item in its top 10 for 22% of one-item contexts (BENCHMARKS.md).
    These windows spell that out; their context positions weigh 0 (they are already counted).

    >>> short_context_sequences([Sequence("u", (4, 5, 6), (1.0, 1.0, 0.0))], 1, 0.5)
    [Sequence(user_id='u', items=(4, 5), weights=(0.0, 0.5))]
    >>> short_context_sequences([Sequence("u", (4, 5, 6), (0.0, 1.0, 1.0))], 2, 1.0, full=True)
    [Sequence(user_id='u', items=(4, 5, 6), weights=(0.0, 0.0, 1.0))]
    """
    out = []
    for seq in sequences:
        for j in range(context if full else 1, len(seq.items)):
            if seq.weights[j] > 0:
                items = seq.items[max(0, j - context) : j + 1]
                out.append(Sequence(seq.user_id, items, (0.0,) * (len(items) - 1) + (weight * seq.weights[j],)))
    return out


def later_sequences(sequences: Iterable[Sequence], steps: int, weight: float) -> list[Sequence]:
    """Every counted window's target again after each single item ``2 .. steps + 1`` positions before it,
    weighted ``weight``: one-item windows that pair an item with what its user took a few steps later.

    A policy decoded once per recent item (``recast.anchors``) asks the item d steps back what comes next,
    while its one-item windows only ever taught what comes right after an item. These windows teach the
    items further on as well, so an older anchor's beam is closer to the question it answers.

    >>> later_sequences([Sequence("u", (4, 5, 6, 7), (1.0, 1.0, 0.0, 1.0))], 2, 0.5)
    [Sequence(user_id='u', items=(5, 7), weights=(0.0, 0.5)), Sequence(user_id='u', items=(4, 7), weights=(0.0, 0.5))]
    """
    out = []
    for seq in sequences:
        for j in range(2, len(seq.items)):
            if seq.weights[j] > 0:
                for k in range(2, min(steps + 1, j) + 1):
                    out.append(Sequence(seq.user_id, (seq.items[j - k], seq.items[j]), (0.0, weight * seq.weights[j])))
    return out


def transitions(sequences: Iterable[Sequence]) -> Iterable[tuple[int, int, float]]:
    """(previous item, next item, weight) for every counted window with a non-empty context."""
    for seq in sequences:
        for j in range(1, len(seq.items)):
            if seq.weights[j] > 0:
                yield seq.items[j - 1], seq.items[j], seq.weights[j]


def split_users(user_ids: Iterable[str], holdout: float, seed: int) -> set[str]:
    """The held-out users: a ``holdout`` share of the distinct users, chosen by a
    seeded hash so the split is stable across runs, machines and row order."""
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout}")
    users = _hash_order(user_ids, seed)
    return set(users[: round(len(users) * holdout)])


def user_folds(user_ids: Iterable[str], folds: int, seed: int) -> dict[str, int]:
    """Each distinct user's fold in ``0 .. folds - 1``: the users in the seeded hash order :func:`split_users` uses,
    dealt in turn, so the folds differ in size by one user at most and do not depend on row order.

    >>> sorted(user_folds(["a", "b", "c", "a"], 2, seed=0).values())
    [0, 0, 1]
    """
    if folds < 2:
        raise ValueError(f"need two folds or more, got {folds}")
    return {user: i % folds for i, user in enumerate(_hash_order(user_ids, seed))}


def _hash_order(user_ids: Iterable[str], seed: int) -> list[str]:
    """The distinct users in a seeded hash order: the same on every machine and for any row order."""
    return sorted(set(user_ids), key=lambda u: hashlib.sha256(f"{seed}:{u}".encode()).hexdigest())
