"""Two count-based recommenders: the yardsticks a learned policy must beat.

- Popularity: how often each item is a (counted) training target.
- First-order transition: for a history, sum over its items of
  ``decay**distance * P(next | item)`` (distance 0 = most recent item), estimated
  from next-item counts of the training windows, with popularity as a tiny
  backfill so every item gets a score. It is strong on this data because product
  variants follow each other (quality notes).

Both give a score vector over the whole catalog and can be saved as tensors inside
a checkpoint, so the service can fuse the same scores it was evaluated with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from recast.windows import Sequence as TrainingSequence
from recast.windows import transitions

BACKFILL = 1e-6  # share of the smallest transition score the backfill may reach


@dataclass(frozen=True)
class PopularityModel:
    counts: torch.Tensor  # (N,)

    @classmethod
    def fit(cls, sequences: Iterable[TrainingSequence], num_items: int) -> PopularityModel:
        counts = torch.zeros(num_items)
        for seq in sequences:
            for item, w in zip(seq.items, seq.weights):
                counts[item] += w
        return cls(counts)

    def scores(self, history: Sequence[int]) -> torch.Tensor:
        return self.counts / self.counts.sum().clamp(min=1.0)


@dataclass(frozen=True)
class TransitionModel:
    """Row-normalised next-item counts in CSR form: row i's successors are
    ``next_items[offsets[i]:offsets[i+1]]`` with probabilities ``next_probs``.

    ``row_totals`` (the counted weight leaving each item) and ``target_total`` (the counted targets behind
    ``popularity``) keep the raw counts recoverable, so :meth:`update` adds new sequences exactly, as if
    fitted on old and new together, without the old sequences (the nightly refresh has only the new)."""

    offsets: torch.Tensor  # (N + 1,)
    next_items: torch.Tensor  # (E,)
    next_probs: torch.Tensor  # (E,)
    popularity: torch.Tensor  # (N,) normalised
    decay: float = 0.5
    row_totals: torch.Tensor | None = None  # (N,); None in checkpoints older than update()
    target_total: float | None = None

    @classmethod
    def fit(cls, sequences: Sequence[TrainingSequence], num_items: int, decay: float = 0.5) -> TransitionModel:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        targets = PopularityModel.fit(sequences, num_items).counts
        return cls._from_counts(_pair_counts(sequences), targets, num_items, decay)

    def update(self, sequences: Sequence[TrainingSequence]) -> TransitionModel:
        """The model fitted on its own sequences plus ``sequences`` (counts add; the decay is kept).

        >>> from recast.windows import Sequence as S
        >>> a, b = [S("u", (0, 1), (1.0, 1.0))], [S("v", (0, 2, 1), (1.0, 1.0, 1.0))]
        >>> both, merged = TransitionModel.fit(a + b, 3), TransitionModel.fit(a, 3).update(b)
        >>> all(torch.allclose(x, y) for x, y in zip(both.to_tensors().values(), merged.to_tensors().values()))
        True
        """
        if self.row_totals is None or self.target_total is None:
            raise ValueError("this transition model predates count totals and cannot be updated; fit it anew")
        num_items = self.popularity.shape[0]
        rows = torch.repeat_interleave(torch.arange(num_items), self.offsets[1:] - self.offsets[:-1])
        pairs = dict(zip(zip(rows.tolist(), self.next_items.tolist()),
                         (self.next_probs * self.row_totals[rows]).tolist()))  # fmt: skip
        for key, weight in _pair_counts(sequences).items():
            pairs[key] = pairs.get(key, 0.0) + weight
        targets = self.popularity * self.target_total + PopularityModel.fit(sequences, num_items).counts
        return self._from_counts(pairs, targets, num_items, self.decay)

    @classmethod
    def _from_counts(cls, pairs: dict[tuple[int, int], float], targets: torch.Tensor, num_items: int,
                     decay: float) -> TransitionModel:  # fmt: skip
        keys = sorted(pairs)
        src = torch.tensor([s for s, _ in keys], dtype=torch.long)
        dst = torch.tensor([d for _, d in keys], dtype=torch.long)
        count = torch.tensor([pairs[k] for k in keys], dtype=torch.float)
        row_total = torch.zeros(num_items).index_add_(0, src, count)
        offsets = torch.zeros(num_items + 1, dtype=torch.long)
        offsets[1:] = torch.bincount(src, minlength=num_items).cumsum(0)
        total = float(targets.sum())
        popularity = targets / max(total, 1.0)
        return cls(offsets, dst, count / row_total[src], popularity, decay, row_total, total)

    def scores(self, history: Sequence[int]) -> torch.Tensor:
        """(N,) scores for one history of catalog positions (oldest first).

        The popularity backfill is scaled below the smallest transition score of this
        history (which ``decay**distance`` can make far smaller than a fixed epsilon),
        so it only orders the items no transition reaches.
        """
        out = torch.zeros_like(self.popularity)
        for distance, item in enumerate(reversed(history)):
            lo, hi = self.offsets[item].item(), self.offsets[item + 1].item()
            out.index_add_(0, self.next_items[lo:hi], self.next_probs[lo:hi] * self.decay**distance)
        reached = out[out > 0]
        scale = BACKFILL * min(1.0, reached.min().item()) if reached.numel() else BACKFILL
        return out + scale * self.popularity / self.popularity.max().clamp(min=1e-12)

    def extended(self, num_items: int) -> TransitionModel:
        """The model over a catalog grown to ``num_items``: the added items have no transitions and no targets
        yet, so they score nothing here (the text scorer and the policy rank them) until a refresh counts
        their interactions (:meth:`update` needs them in the model first)."""
        n = self.popularity.shape[0]
        if num_items < n:
            raise ValueError(f"a catalog only grows: {num_items} items < the model's {n}")
        more = num_items - n
        offsets = torch.cat((self.offsets, self.offsets[-1:].expand(more)))
        popularity = torch.cat((self.popularity, torch.zeros(more)))
        totals = None if self.row_totals is None else torch.cat((self.row_totals, torch.zeros(more)))
        return TransitionModel(offsets, self.next_items, self.next_probs, popularity, self.decay, totals,
                               self.target_total)  # fmt: skip

    def to_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {
            "offsets": self.offsets,
            "next_items": self.next_items,
            "next_probs": self.next_probs,
            "popularity": self.popularity,
            "decay": torch.tensor(self.decay),
        }
        if self.row_totals is not None and self.target_total is not None:
            tensors |= {"row_totals": self.row_totals, "target_total": torch.tensor(self.target_total)}
        return tensors

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> TransitionModel:
        total = float(t["target_total"]) if "target_total" in t else None
        return cls(t["offsets"], t["next_items"], t["next_probs"], t["popularity"], float(t["decay"]),
                   t.get("row_totals"), total)  # fmt: skip


def _pair_counts(sequences: Iterable[TrainingSequence]) -> dict[tuple[int, int], float]:
    pairs: dict[tuple[int, int], float] = {}
    for src, dst, w in transitions(sequences):
        pairs[(src, dst)] = pairs.get((src, dst), 0.0) + w
    return pairs


def top_items(scores: torch.Tensor, k: int) -> list[int]:
    """Positions of the k best scores, best first (ties broken by lower position)."""
    k = min(k, scores.shape[0])
    order = torch.argsort(-scores, stable=True)
    return order[:k].tolist()
