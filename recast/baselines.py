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

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

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
    fitted on old and new together, without the old sequences (the nightly refresh has only the new).

    Those fields hold *counted* interactions only. Items added online with no interaction yet may also
    borrow transitions from known items (:meth:`borrowing`): ``borrowers[m]`` takes ``shares[m]`` of
    ``lenders[m]``'s probabilities, in and out. The borrowed edges are never counts; they are laid over
    the counted ones when the model is built (:meth:`scores` reads the union), so :meth:`update` never
    counts them and drops a borrower's prior once the item has counts of its own."""

    offsets: torch.Tensor  # (N + 1,)
    next_items: torch.Tensor  # (E,)
    next_probs: torch.Tensor  # (E,)
    popularity: torch.Tensor  # (N,) normalised
    decay: float = 0.5
    row_totals: torch.Tensor | None = None  # (N,); None in checkpoints older than update()
    target_total: float | None = None
    borrowers: torch.Tensor | None = None  # (M,) items that borrow (none counted yet); None: no borrowing
    lenders: torch.Tensor | None = None  # (M,) the known item each borrows from
    shares: torch.Tensor | None = None  # (M,) the share of the lender's probabilities borrowed
    # (N,) bool: items added since the counts were made (:meth:`extended`), or hidden from them (:meth:`forgetting`).
    # Such an item has no counts because nobody *could* have interacted with it, not because nobody did; the
    # learned ranker (recast.ranker) reads the difference. None: every item was counted. A refresh (:meth:`update`)
    # clears it for the items it has counted often enough (its ``mark_until``).
    added: torch.Tensor | None = None

    def __post_init__(self) -> None:
        # What scores() reads: the counted CSR, or the counted edges with the borrowed ones laid over them.
        served = (self.offsets, self.next_items, self.next_probs, self.popularity)
        if self.borrowers is not None and self.borrowers.numel():
            served = _with_borrowed(self)
        for name, tensor in zip(("_offsets", "_next_items", "_next_probs", "_popularity"), served):
            object.__setattr__(self, name, tensor)

    @classmethod
    def fit(cls, sequences: Sequence[TrainingSequence], num_items: int, decay: float = 0.5) -> TransitionModel:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        targets = PopularityModel.fit(sequences, num_items).counts
        return cls._from_counts(_pair_counts(sequences), targets, num_items, decay)

    def update(self, sequences: Sequence[TrainingSequence], mark_until: float = 1.0) -> TransitionModel:
        """The model fitted on its own sequences plus ``sequences`` (counts add; the decay is kept).

        An added item keeps its mark (``added``) until it has been counted ``mark_until`` times in all (its weight
        in the counted windows, as context or target); 1: until its first count.

        >>> from recast.windows import Sequence as S
        >>> a, b = [S("u", (0, 1), (1.0, 1.0))], [S("v", (0, 2, 1), (1.0, 1.0, 1.0))]
        >>> both, merged = TransitionModel.fit(a + b, 3), TransitionModel.fit(a, 3).update(b)
        >>> all(torch.allclose(x, y) for x, y in zip(both.to_tensors().values(), merged.to_tensors().values()))
        True
        """
        pairs, targets = self._counts("be updated")
        num_items = self.popularity.shape[0]
        for key, weight in _pair_counts(sequences).items():
            pairs[key] = pairs.get(key, 0.0) + weight
        targets = targets + PopularityModel.fit(sequences, num_items).counts
        counted = self._from_counts(pairs, targets, num_items, self.decay)
        if self.added is not None:
            few = ~counted.has_counts(torch.arange(num_items)) if mark_until <= 1.0 else targets < mark_until - 1e-6
            still = self.added & few
            counted = replace(counted, added=still if bool(still.any()) else None)
        if self.borrowers is None:
            return counted
        keep = ~counted.has_counts(self.borrowers)
        if not bool(keep.any()):
            return counted
        return counted.borrowing(self.borrowers[keep], self.lenders[keep], self.shares[keep])

    def has_counts(self, items: torch.Tensor) -> torch.Tensor:
        """(M,) bool: whether each of ``items`` has any counted interaction (leaving it, reaching it, or as a
        target)."""
        num_items = self.popularity.shape[0]
        counted = torch.zeros(num_items, dtype=torch.bool)
        counted[self.next_items] = True
        counted |= self.offsets[1:] > self.offsets[:-1]
        counted |= self.popularity > 0
        return counted[items]

    def borrowing(self, borrowers: torch.Tensor, lenders: torch.Tensor, shares: torch.Tensor) -> TransitionModel:
        """This model with ``borrowers[m]`` taking ``shares[m]`` of ``lenders[m]``'s counted transitions, a prior
        for items added online before anyone interacted with them (``recast.added_items`` picks each new
        item's nearest known items by text). For each borrower ``j``, lender ``n`` and share ``s``:

        - *incoming*: every item ``i`` reaches ``j`` with ``s * P(n | i)``. The rows are **not** renormalised, so
          no counted item's score changes; with shares summing to at most 1, ``j`` never outscores its lenders
          and the per-row maximum the fusion scales by stays a counted item's;
        - *outgoing*: ``j`` reaches ``k`` with ``s * P(k | n)``, so ``j`` in a history acts as a damped ``n``;
        - *popularity* (the backfill): ``s * popularity[n]``.

        Why a separate layer rather than pseudo-counts folded into the counts: the nightly refresh
        (:meth:`update`) recovers the counts from ``next_probs * row_totals`` and adds the day's, exactly. Folded
        pseudo-counts would be recovered as if they had happened, counted again by every refresh's arithmetic
        and never leave: a guess about an item would outweigh its real interactions for ever. Kept apart, they
        are never counted, the borrowed edges follow the lenders' *current* counts (a refresh that learns more
        about the lender passes it on), and an item's prior is dropped by the first refresh that counts any
        interaction of its own, after which counts alone rank it, like any other counted item. Borrowers must
        have no counts, and lenders must be items that do not borrow."""
        if not (borrowers.shape == lenders.shape == shares.shape) or borrowers.dim() != 1:
            raise ValueError("borrowers, lenders and shares must be equally long vectors")
        if borrowers.numel() and bool(self.has_counts(borrowers).any()):
            raise ValueError("an item with counted interactions cannot borrow transitions")
        if borrowers.numel() and bool(torch.isin(lenders, borrowers).any()):
            raise ValueError("a borrowing item cannot lend")
        if borrowers.numel() and bool((shares < 0).any()):
            raise ValueError("borrowed shares must be >= 0")
        return TransitionModel(self.offsets, self.next_items, self.next_probs, self.popularity, self.decay,
                               self.row_totals, self.target_total, borrowers.long(), lenders.long(),
                               shares.float(), self.added)  # fmt: skip

    def added_items(self) -> torch.Tensor:
        """(N,) bool: the items added since the counts were made (see ``added``)."""
        if self.added is None:
            return torch.zeros(self.popularity.shape[0], dtype=torch.bool)
        return self.added

    def forgetting(self, items: torch.Tensor) -> TransitionModel:
        """This model as if ``items`` had been added after the counts were made: no transition leaves or reaches
        them, they are no target, and they are marked ``added``. The other items' transitions are renormalised
        over what is left. ``learner.ranker_trainer`` hides a share of the items this way in every fold, so the
        ranker learns how items added online, which have text and no counts, are bought.

        >>> from recast.windows import Sequence as S
        >>> m = TransitionModel.fit([S("u", (0, 1, 2), (1.0, 1.0, 1.0)), S("v", (0, 2), (1.0, 1.0))], 3)
        >>> f = m.forgetting(torch.tensor([1]))
        >>> [round(x, 3) for x in f.scores([0]).tolist()], f.added_items().tolist()
        ([0.0, 0.0, 1.0], [False, True, False])
        """
        if self.borrowers is not None and self.borrowers.numel():
            raise ValueError("forgetting is for counted models; this one has borrowed transitions")
        pairs, targets = self._counts("forget items")
        num_items = self.popularity.shape[0]
        gone = torch.zeros(num_items, dtype=torch.bool)
        gone[items] = True
        hidden = set(items.tolist())
        kept = {(s, d): w for (s, d), w in pairs.items() if s not in hidden and d not in hidden}
        forgot = self._from_counts(kept, targets.masked_fill(gone, 0.0), num_items, self.decay)
        return replace(forgot, added=gone | self.added_items())

    def thinning(self, items: torch.Tensor, keep: torch.Tensor, seed: int = 0) -> TransitionModel:
        """This model as if ``items`` had been added after the counts were made and counted ``keep`` times each
        since (at most what they had): each keeps that many of its counted arrivals and as many of its departures,
        drawn at random in proportion to their counts, and is marked ``added``. ``learner.ranker_trainer`` thins a
        share of the items this way, so the ranker learns how an item added online reads once a refresh has
        counted it a few times and kept its mark (``RefreshConfig.added_mark_until``).

        >>> from recast.windows import Sequence as S
        >>> m = TransitionModel.fit([S("u", (0, 1, 2), (1.0, 1.0, 1.0)), S("v", (0, 1), (1.0, 1.0))], 3)
        >>> t = m.thinning(torch.tensor([1]), torch.tensor([1]))
        >>> [round(x, 3) for x in t._counts("")[0].values()], t.added_items().tolist()
        ([1.0, 1.0], [False, True, False])
        """
        if self.borrowers is not None and self.borrowers.numel():
            raise ValueError("thinning is for counted models; this one has borrowed transitions")
        pairs, targets = self._counts("thin items")
        rng = random.Random(seed)
        ends: dict[int, tuple[list, list]] = {i: ([], []) for i in items.tolist()}  # its arrivals, its departures
        for key in pairs:
            for side, item in enumerate((key[1], key[0])):
                if item in ends:
                    ends[item][side].append(key)
        for item, k in zip(items.tolist(), keep.tolist(), strict=True):
            for listed in ends[item]:
                edges = sorted(key for key in listed if key in pairs)  # a pair of two thinned items may be gone
                units = [key for key in edges for _ in range(round(pairs[key]))]
                chosen = Counter(rng.sample(units, min(k, len(units))))
                for key in edges:
                    if chosen[key]:
                        pairs[key] = float(chosen[key])
                    else:
                        del pairs[key]
            targets[item] = min(float(targets[item]), float(k))
        thinned = self._from_counts(pairs, targets, self.popularity.shape[0], self.decay)
        marked = self.added_items().clone()
        marked[items] = True
        return replace(thinned, added=marked)

    def _counts(self, doing: str) -> tuple[dict[tuple[int, int], float], torch.Tensor]:
        """The raw counts behind the model: (weight per counted (item, next item) pair, counted targets per item),
        what :meth:`update` adds to and :meth:`forgetting` takes from."""
        if self.row_totals is None or self.target_total is None:
            raise ValueError(f"this transition model predates count totals and cannot {doing}; fit it anew")
        num_items = self.popularity.shape[0]
        rows = torch.repeat_interleave(torch.arange(num_items), self.offsets[1:] - self.offsets[:-1])
        pairs = dict(zip(zip(rows.tolist(), self.next_items.tolist()),
                         (self.next_probs * self.row_totals[rows]).tolist()))  # fmt: skip
        return pairs, self.popularity * self.target_total

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
        offsets, next_items, next_probs = self._offsets, self._next_items, self._next_probs
        popularity = self._popularity
        out = torch.zeros_like(popularity)
        for distance, item in enumerate(reversed(history)):
            lo, hi = offsets[item].item(), offsets[item + 1].item()
            out.index_add_(0, next_items[lo:hi], next_probs[lo:hi] * self.decay**distance)
        reached = out[out > 0]
        scale = BACKFILL * min(1.0, reached.min().item()) if reached.numel() else BACKFILL
        return out + scale * popularity / popularity.max().clamp(min=1e-12)

    def extended(self, num_items: int) -> TransitionModel:
        """The model over a catalog grown to ``num_items``: the added items have no transitions and no targets
        yet, so they score nothing here (the text scorer and the policy rank them) until a refresh counts
        their interactions (:meth:`update` needs them in the model first), unless they then borrow a prior
        (:meth:`borrowing`). Items that already borrowed keep their prior."""
        n = self.popularity.shape[0]
        if num_items < n:
            raise ValueError(f"a catalog only grows: {num_items} items < the model's {n}")
        more = num_items - n
        offsets = torch.cat((self.offsets, self.offsets[-1:].expand(more)))
        popularity = torch.cat((self.popularity, torch.zeros(more)))
        totals = None if self.row_totals is None else torch.cat((self.row_totals, torch.zeros(more)))
        added = torch.cat((self.added_items(), torch.ones(more, dtype=torch.bool))) if more else self.added
        return TransitionModel(offsets, self.next_items, self.next_probs, popularity, self.decay, totals,
                               self.target_total, self.borrowers, self.lenders, self.shares, added)  # fmt: skip

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
        if self.borrowers is not None:
            tensors |= {"borrowers": self.borrowers, "lenders": self.lenders, "shares": self.shares}
        if self.added is not None:
            tensors["added"] = self.added
        return tensors

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> TransitionModel:
        total = float(t["target_total"]) if "target_total" in t else None
        return cls(t["offsets"], t["next_items"], t["next_probs"], t["popularity"], float(t["decay"]),
                   t.get("row_totals"), total, t.get("borrowers"), t.get("lenders"), t.get("shares"),
                   t.get("added"))  # fmt: skip


def _with_borrowed(model: TransitionModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(offsets, next_items, next_probs, popularity): the counted CSR with the borrowed edges added
    (:meth:`TransitionModel.borrowing` says which)."""
    num_items = model.popularity.shape[0]
    degree = model.offsets[1:] - model.offsets[:-1]
    src = torch.repeat_interleave(torch.arange(num_items), degree)
    parts = [(src, model.next_items, model.next_probs)]
    for j, n, s in zip(model.borrowers.tolist(), model.lenders.tolist(), model.shares.tolist()):
        into = model.next_items == n  # edges i -> n become i -> j
        parts.append((src[into], torch.full((int(into.sum()),), j), s * model.next_probs[into]))
        lo, hi = model.offsets[n].item(), model.offsets[n + 1].item()  # n -> k becomes j -> k
        parts.append((torch.full((hi - lo,), j), model.next_items[lo:hi], s * model.next_probs[lo:hi]))
    src_all, dst_all, prob_all = (torch.cat(p) for p in zip(*parts))
    # Coalesce (two lenders can both reach the same pair) and order by source, as the CSR needs.
    key = src_all * num_items + dst_all
    unique, inverse = torch.unique(key, return_inverse=True)
    probs = torch.zeros(unique.shape[0]).index_add_(0, inverse, prob_all)
    rows = unique // num_items
    offsets = torch.zeros(num_items + 1, dtype=torch.long)
    offsets[1:] = torch.bincount(rows, minlength=num_items).cumsum(0)
    popularity = model.popularity.clone().index_add_(0, model.borrowers, model.shares * model.popularity[model.lenders])
    return offsets, unique % num_items, probs, popularity


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
