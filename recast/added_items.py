"""Items added online, as the domain sees them: a catalog item built from its recorded code and entry, and a
checkpoint carried over a catalog that grew after it was trained.

An item is its code, so a policy needs no new weights for an added item whose tokens it already has embeddings
for (:mod:`recast.sids.served` gives only such codes): the item map and the trie grow. The text scorer gets rows
for the added items from their title and brand under its fitted vocabulary and idf (:meth:`TextModel.extend`),
so the fused ranking can rank them before anyone bought them; the transition scorer gives them nothing until
interactions are counted (:meth:`TransitionModel.extended`, then ``update``). Serving loads a checkpoint this way
(``serving.served_model``), and the nightly refresh starts from its parent this way, so it learns the added
items' interactions and its child is trained on the grown catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch

from recast.catalog import Catalog, Item, parse_sid
from recast.checkpoint import Checkpoint


def added_item(item_id: str, code: str, entry: Mapping) -> Item:
    """The catalog item of an item added online: its recorded code, and the title and brand of its entry."""
    tokens = parse_sid(code)
    return Item(item_id, str(entry.get("title") or ""), str(entry.get("brand") or ""), tokens[:-1], tokens)


def item_text(item: Item) -> str:
    """What the text scorer reads of an item (as ``learner.sft_trainer`` fits it)."""
    return f"{item.title} {item.brand}"


def grow_checkpoint(ckpt: Checkpoint, catalog: Catalog) -> Checkpoint:
    """``ckpt`` over ``catalog``, which holds its items first (same ids, same order) and then added items.
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
    return replace(ckpt, item_ids=[i.item_id for i in catalog.items], codes=torch.cat((ckpt.codes, codes)),
                   transition=ckpt.transition.extended(len(catalog)), text=text)  # fmt: skip
