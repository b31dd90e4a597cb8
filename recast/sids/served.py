"""Codes for items added to a *served* catalog, in that catalog's own code space.

The served catalog uses the data set's shipped SIDs, not a tokenizer learnt here, and the policy decodes
only tokens it has embeddings for. So a new item must get a code made of tokens the policy already knows:

- **Codebooks from the existing assignment.** Items are featurised as :mod:`recast.sids.features` does (fitted
  on the catalog's own text). Level ``l``'s codeword for token ``t`` is the mean *residual* vector of the items
  whose SID holds ``t`` at level ``l`` (as :mod:`recast.text_init` initialises token embeddings: level 0 the
  items' vectors, level 1 minus their level-0 codeword, ...). A path's vector is the sum of its codewords,
  which is what the policy's token embeddings started from.
- **Only existing paths.** A new item's candidates are the SIDs some item already holds, ranked by cosine
  between the item's vector and the path's vector, so every level token is one the policy has seen decoded.
  An item whose text is an existing item's (cosine >= :data:`DUPLICATE`) is the same product listed twice:
  that item's SID ranks first, the collision the disambiguation token exists for.
- **A known disambiguation token.** The item takes the next free ``<d_n>`` of its SID (one past the largest
  taken, as :func:`recast.catalog.extend_catalog` numbers). When that token is not in ``known_tokens`` (the
  policy's vocabulary: it has no embedding for ``<d_n>`` with ``n`` beyond what training saw) the next
  nearest path is tried, and so on; only when no existing path has a known free index is the item refused
  (:class:`~recast.catalog.CatalogError`). The fallback costs little: the next path is still near the text,
  and the text scorer ranks the item by its own words either way.
- **Or an unused path** (``assign(..., unused_paths=True)``): a path of known level tokens that no item holds
  yet, found as a residual quantiser would (the :data:`SEARCH` nearest codewords per level to the item's
  residual, every combination ranked by the cosine of its vector), ending in ``<d_0>``, the disambiguation
  token every item's training saw. The new item then shares no code with an old one, so decoding it never
  takes probability from an old item with its prefix, and never needs ``<d_n>`` tokens the policy rarely saw;
  the price is a prefix the policy never decoded. An item whose text duplicates an existing item's still takes
  that item's path (the collision the disambiguation token is for), and an item for which every searched path
  is taken falls back to a used path. Measured on the cold-start experiment (BENCHMARKS.md, "Cold start"): no
  different from a used path beyond the noise, so it is not what serving assigns.

Pure: the featuriser is fitted with an explicit generator, so the same catalog and entries give the same codes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch.nn.functional import normalize

from recast.catalog import SID_TOKEN, Catalog, CatalogError, id_order
from recast.sids.features import TextFeaturizer

DUPLICATE = 1.0 - 1e-5  # cosine at which two items' text is the same text
SEARCH = 6  # codewords tried per level for an unused path: SEARCH**levels combinations an item


def catalog_entries(catalog: Catalog, entries: Mapping[str, Mapping] | None = None) -> list[dict]:
    """Every catalog item's ``items.json`` entry in catalog order: ``entries`` where it has one, else the title
    and brand the catalog holds (the served catalog keeps no more of an item's text)."""
    entries = entries or {}
    return [dict(entries.get(i.item_id) or {"title": i.title, "brand": i.brand}) for i in catalog.items]


@dataclass(frozen=True)
class ServedCoder:
    featurizer: TextFeaturizer
    paths: tuple[tuple[str, ...], ...]  # every SID the catalog holds, in first-seen order
    path_vectors: torch.Tensor  # (P, d) unit: the sum of each path's codewords, normalised
    item_vectors: torch.Tensor  # (N, d) unit: the catalog's items, catalog order
    item_paths: torch.Tensor  # (N,) index into ``paths`` of each item's SID
    next_free: Mapping[tuple[str, ...], int]  # SID -> its next free disambiguation index
    disambiguation_level: str
    known_tokens: frozenset[str] | None  # the policy's vocabulary; None: any disambiguation index is allowed
    codebooks: tuple[tuple[tuple[str, ...], torch.Tensor], ...] = ()  # per level: tokens, their codewords (T, d)

    @classmethod
    def from_catalog(cls, catalog: Catalog, entries: Mapping[str, Mapping] | None = None,
                     known_tokens: Iterable[str] | None = None, dim: int = 128, min_df: int = 2,
                     seed: int = 0) -> ServedCoder:  # fmt: skip
        """Codebooks from ``catalog``'s codes and its items' text (``entries``: item id -> ``items.json`` entry;
        items without one are read from the catalog's title and brand)."""
        generator = torch.Generator().manual_seed(seed)
        texts = catalog_entries(catalog, entries)
        featurizer = TextFeaturizer.fit(texts, dim, generator, min_df)
        vectors = featurizer.embed(texts)
        paths = tuple(dict.fromkeys(item.sid for item in catalog.items))
        path_index = {p: n for n, p in enumerate(paths)}
        item_paths = torch.tensor([path_index[item.sid] for item in catalog.items], dtype=torch.long)
        # Residual means per level, as recast.text_init.token_vectors: tokens are shared across prefixes.
        residual, path_sum = vectors.clone(), torch.zeros(len(paths), vectors.shape[1])
        codebooks = []
        for level in range(len(paths[0])):
            tokens = sorted({p[level] for p in paths})
            token_index = {t: n for n, t in enumerate(tokens)}
            of_item = torch.tensor([token_index[item.sid[level]] for item in catalog.items], dtype=torch.long)
            sums = torch.zeros(len(tokens), vectors.shape[1]).index_add_(0, of_item, residual)
            means = sums / torch.bincount(of_item, minlength=len(tokens)).clamp(min=1).unsqueeze(1)
            residual = residual - means[of_item]
            codebooks.append((tuple(tokens), means))
            path_sum += means[torch.tensor([token_index[p[level]] for p in paths], dtype=torch.long)]
        next_free: dict[tuple[str, ...], int] = defaultdict(int)
        for item in catalog.items:
            index = int(SID_TOKEN.fullmatch(item.code[-1]).group(2))
            next_free[item.sid] = max(next_free[item.sid], index + 1)
        known = None if known_tokens is None else frozenset(known_tokens)
        return cls(featurizer, paths, normalize(path_sum, dim=1), vectors, item_paths, dict(next_free),
                   catalog.disambiguation_level, known, tuple(codebooks))  # fmt: skip

    def ranked_paths(self, entry: Mapping) -> list[int]:
        """Indices into :attr:`paths`, best first: paths of items with this exact text, then by cosine."""
        vector = self.featurizer.embed([entry])[0]
        duplicates = (self.item_vectors @ vector >= DUPLICATE).nonzero().flatten()
        first = list(dict.fromkeys(self.item_paths[duplicates].tolist()))
        by_cosine = torch.argsort(-(self.path_vectors @ vector), stable=True).tolist()
        return list(dict.fromkeys(first + by_cosine))

    def unused_paths(self, entry: Mapping) -> list[tuple[str, ...]]:
        """Paths of known level tokens near the item's text, best first (some may be taken): the :data:`SEARCH`
        codewords per level nearest the item's residual, every combination ranked by the cosine between the item's
        vector and the sum of the combination's codewords."""
        vector = self.featurizer.embed([entry])[0]
        residual = vector.unsqueeze(0)  # (C, d): the residual of each partial combination
        chosen = torch.zeros(1, 0, dtype=torch.long)  # (C, level): codeword indices so far
        total = torch.zeros(1, vector.shape[0])  # (C, d): the sum of their codewords
        for _, means in self.codebooks:
            near = torch.cdist(residual, means).topk(min(SEARCH, means.shape[0]), largest=False).indices  # (C, S)
            c, k = near.shape
            chosen = torch.cat((chosen.repeat_interleave(k, 0), near.reshape(-1, 1)), dim=1)
            total = total.repeat_interleave(k, 0) + means[near.reshape(-1)]
            residual = vector.unsqueeze(0) - total
        order = torch.argsort(-(normalize(total, dim=1) @ vector), stable=True)
        return [tuple(self.codebooks[level][0][i] for level, i in enumerate(chosen[n].tolist()))
                for n in order.tolist()]  # fmt: skip

    def assign(self, new_entries: Mapping[str, Mapping], unused_paths: bool = False) -> dict[str, tuple[str, ...]]:
        """Item id -> code (SID + disambiguation token) for each new item, taken in :func:`id_order` so two new
        items of one SID get successive indices. Raises :class:`CatalogError` naming an item no existing path
        can take with a known disambiguation token. ``unused_paths``: an item whose text duplicates no existing
        item's takes the nearest path no item holds yet, with ``<d_0>`` (the module's docstring says why)."""
        taken = dict(self.next_free)
        out = {}
        first = f"<{self.disambiguation_level}_0>"
        for item_id in sorted(new_entries, key=id_order):
            entry = new_entries[item_id]
            if unused_paths and not self._duplicates(entry):
                sid = next((p for p in self.unused_paths(entry) if p not in taken), None)
                if sid is not None:
                    taken[sid] = 1
                    out[item_id] = sid + (first,)
                    continue
            for path_index in self.ranked_paths(entry):
                sid = self.paths[path_index]
                token = f"<{self.disambiguation_level}_{taken[sid]}>"
                if self.known_tokens is None or token in self.known_tokens:
                    taken[sid] += 1
                    out[item_id] = sid + (token,)
                    break
            else:
                raise CatalogError(f"item {item_id!r}: every SID's next disambiguation token is beyond what the "
                                   f"model knows (the largest is {self._largest_known()}); retrain to add more "
                                   "items")  # fmt: skip
        return out

    def _duplicates(self, entry: Mapping) -> bool:
        return bool((self.item_vectors @ self.featurizer.embed([entry])[0] >= DUPLICATE).any())

    def _largest_known(self) -> str:
        letter = self.disambiguation_level
        known = [int(m.group(2)) for t in self.known_tokens or () if (m := SID_TOKEN.fullmatch(t)) and
                 m.group(1) == letter]  # fmt: skip
        return f"<{letter}_{max(known)}>" if known else "none"

