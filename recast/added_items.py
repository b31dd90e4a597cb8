"""Items added online, as the domain sees them: a catalog item built from its recorded code and entry, and a
checkpoint carried over a catalog that grew after it was trained.

An item is its code, so a policy needs no new weights for an added item whose tokens it already has embeddings
for (:mod:`recast.sids.served` gives only such codes): the item map and the trie grow. The text scorer gets rows
for the added items from their title and brand under its fitted vocabulary and idf (:meth:`TextModel.extend`),
so the fused ranking can rank them before anyone bought them. The transition scorer has no counts for them until
a refresh counts their interactions (:meth:`TransitionModel.extended`, then ``update``). Until then an added
item can borrow a damped copy of the transitions of its nearest known items by that same text
(:meth:`TransitionModel.borrowing`, :class:`Borrow`), a prior the first refresh that counts the item drops; the
served default (:data:`BORROW`) borrows nothing, because it did not help where measured. Serving loads a
checkpoint this way (``serving.served_model``), and the nightly refresh starts from its parent this way, so it
learns the added items' interactions and its child is trained on the grown catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch

from recast.baselines import TransitionModel
from recast.catalog import Catalog, Item, parse_sid
from recast.checkpoint import Checkpoint
from recast.text import TextModel, item_text


@dataclass(frozen=True)
class Borrow:
    """How an added item borrows transitions: from its ``neighbours`` nearest known items by text, sharing
    ``factor`` of their probabilities between them in proportion to their cosine (0: borrow nothing)."""

    factor: float = 0.5
    neighbours: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.factor <= 1.0:
            raise ValueError(f"factor must be in [0, 1] (an added item never outscores its lenders), got {self.factor}")
        if self.neighbours < 1:
            raise ValueError(f"neighbours must be >= 1, got {self.neighbours}")


# Off: on the cold-start experiment's seed 0 every factor tried (0.25 to 1, from 1 or 3 neighbours) cost the old
# targets more than it gave the new ones, and seeds 1-3 agreed (BENCHMARKS.md, "Cold start"). The mechanism stays
# for the experiment to measure and for a catalog whose neighbours' transitions carry over better.
BORROW = Borrow(factor=0.0)


def added_item(item_id: str, code: str, entry: Mapping) -> Item:
    """The catalog item of an item added online: its recorded code, and the title and brand of its entry."""
    tokens = parse_sid(code)
    return Item(item_id, str(entry.get("title") or ""), str(entry.get("brand") or ""), tokens[:-1], tokens)


def grow_checkpoint(ckpt: Checkpoint, catalog: Catalog, borrow: Borrow = BORROW) -> Checkpoint:
    """``ckpt`` over ``catalog``, which holds its items first (same ids, same order) and then added items, which
    borrow transitions from their nearest known items by text as ``borrow`` says.
    Raises ``ValueError`` when it does not, when an added code holds a token the policy has no embedding for,
    or when the text scorer was not fitted on the catalog's text."""
    n = len(ckpt.item_ids)
    if [i.item_id for i in catalog.items[:n]] != list(ckpt.item_ids):
        raise ValueError(f"the catalog ({len(catalog)} items) does not start with the checkpoint's {n} items")
    added = catalog.items[n:]
    if not added:
        return ckpt
    try:
        codes = torch.tensor([[ckpt.tokenizer.token_id(t) for t in item.code] for item in added], dtype=torch.long)
    except KeyError as exc:
        raise ValueError(f"an added item's code holds token {exc} that the model has no embedding for") from None
    try:
        text = ckpt.text.extend([item_text(i) for i in catalog.items[:n]], [item_text(i) for i in added])
    except ValueError as exc:
        raise ValueError(f"cannot score the added items' text: {exc}") from None
    transition = borrowed_transitions(ckpt.transition.extended(len(catalog)), text, n, borrow)
    return replace(ckpt, item_ids=[i.item_id for i in catalog.items], codes=torch.cat((ckpt.codes, codes)),
                   transition=transition, text=text)  # fmt: skip


def borrowed_transitions(transition: TransitionModel, text: TextModel, known: int, borrow: Borrow) -> TransitionModel:
    """``transition`` (over the grown catalog) with each item from position ``known`` on borrowing from its nearest
    items before ``known`` that have counts of their own, by ``text`` cosine (neighbours sharing no word lend
    nothing). Items before ``known`` that already borrow keep what they have; having no counts, they lend nothing."""
    num_items = transition.popularity.shape[0]
    lending = transition.has_counts(torch.arange(known))
    added = list(range(known, num_items))
    if borrow.factor == 0.0 or not added or not bool(lending.any()):
        return transition
    positions, cosines = text.nearest(added, lending, borrow.neighbours)
    shares = borrow.factor * cosines / cosines.sum(dim=1, keepdim=True).clamp(min=1e-12)
    borrowers = torch.tensor(added).unsqueeze(1).expand_as(positions)
    keep = cosines > 0
    old = (transition.borrowers, transition.lenders, transition.shares) if transition.borrowers is not None else None
    new = (borrowers[keep], positions[keep], shares[keep])
    if old is not None:
        new = tuple(torch.cat((a, b)) for a, b in zip(old, new))
    return transition.borrowing(*new)
