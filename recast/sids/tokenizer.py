"""The item tokenizer: item text -> a semantic ID (SID) of ``levels`` tokens, ``<a_i><b_j><c_k>``.

Fitting learns a text featuriser (``recast.sids.features``) and a residual k-means codebook per level
(``recast.sids.residual``) from a catalog's ``items.json`` entries. The fitted items' SIDs
(:attr:`ItemTokenizer.fitted`) are :meth:`ItemTokenizer.encode` of their own text, except that items
which would collide are spread over free last-level codewords (``recast.sids.collisions``; the item
nearest the shared codeword keeps :meth:`encode`'s SID). Level ``l``'s tokens use the ``l``-th letter
(``a``, ``b``, ...) and number the codewords from 0.

What :meth:`ItemTokenizer.assign` guarantees, and what it leaves to the catalog:

- every item of ``existing`` keeps its SID exactly, whatever its text now is or however the SIDs were made
  (the shipped ones included); an item id already in ``existing`` is not re-encoded;
- a new item gets :meth:`encode` of its text: the nearest codeword path, computed row by row
  (``recast.sids.kmeans.nearest``), so it does not depend on which other items arrive with it, and a new
  item whose text equals a fitted item's gets that item's SID (for a fitted item that the fit moved off a
  collision, the SID of the item that kept the shared path);
- a new item may share a SID with existing items; that is not an error. Items sharing a SID are told apart
  by the catalog's disambiguation token ``<d_n>``, which ``assign`` does not give. ``recast.catalog.build_catalog``
  numbers ``n`` by ascending item id within a SID, so rebuilding the catalog with a new item whose id sorts
  before an existing item of its SID would renumber that item's ``<d_n>`` and a trained policy would decode
  the wrong item. A catalog that grows must therefore be extended with ``recast.catalog.extend_catalog``,
  which appends new items with the next free ``n`` of their SID and leaves every existing code alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import torch

from recast.catalog import CatalogError, id_order, parse_sid
from recast.sids.collisions import spread
from recast.sids.features import DEFAULT_FIELD_WEIGHTS, TextFeaturizer
from recast.sids.residual import ResidualQuantizer

# What the shipped SIDs (data/amazon18-industrial/sid_index.json) use: 48 distinct first-level tokens of
# their 256, and all 256 at the second and third levels.
SHIPPED_CODEBOOK_SIZES = (48, 256, 256)
MAX_LEVELS = 8  # letters a..h; the catalog takes the next free letter for its disambiguation level


@dataclass(frozen=True)
class SidConfig:
    """Everything that decides a fit; saved with the tokenizer."""

    codebook_sizes: tuple[int, ...] = SHIPPED_CODEBOOK_SIZES  # one per level
    dim: int = 128  # dense text dimension (SVD directions of the TF-IDF matrix)
    min_df: int = 2  # a word must occur in this many fitted items to be in the vocabulary
    iterations: int = 50  # Lloyd steps per level (fewer once assignments stop changing)
    seed: int = 0
    spread_collisions: bool = True  # move the fitted catalog's colliding items to free last-level codewords
    field_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FIELD_WEIGHTS))

    def __post_init__(self) -> None:
        object.__setattr__(self, "codebook_sizes", tuple(int(k) for k in self.codebook_sizes))
        if not 1 <= len(self.codebook_sizes) <= MAX_LEVELS:
            raise ValueError(f"levels must be 1..{MAX_LEVELS}, got {len(self.codebook_sizes)}")
        if any(k < 1 for k in self.codebook_sizes):
            raise ValueError(f"every codebook size must be >= 1, got {list(self.codebook_sizes)}")
        for name in ("dim", "min_df", "iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def levels(self) -> int:
        return len(self.codebook_sizes)

    @property
    def letters(self) -> str:
        return "abcdefgh"[: self.levels]

    def to_dict(self) -> dict:
        return {**asdict(self), "codebook_sizes": list(self.codebook_sizes)}


@dataclass(frozen=True)
class ItemTokenizer:
    config: SidConfig
    featurizer: TextFeaturizer
    quantizer: ResidualQuantizer
    fitted: dict[str, tuple[str, ...]]  # the fitted catalog's SIDs, by item id

    @classmethod
    def fit(
        cls,
        items: Mapping[str, Mapping],
        config: SidConfig | None = None,
        on_iteration: Callable[[], None] | None = None,
    ) -> ItemTokenizer:
        """Learn from ``items`` (item id -> ``items.json`` entry). The result depends on the items and the config
        only, not on the mapping's order. ``on_iteration``: called ``iterations`` times per level (progress)."""
        config = config or SidConfig()
        if not items:
            raise ValueError("cannot fit a tokenizer on no items")
        ids = sorted(items, key=id_order)
        entries = [items[i] for i in ids]
        generator = torch.Generator().manual_seed(config.seed)
        featurizer = TextFeaturizer.fit(entries, config.dim, generator, config.min_df, config.field_weights)
        vectors = featurizer.embed(entries)
        quantizer = ResidualQuantizer.fit(vectors, config.codebook_sizes, generator, config.iterations, on_iteration)
        codes, directions = quantizer.walk(vectors)
        if config.spread_collisions:
            codes = spread(codes, directions[-1], quantizer.codebooks[-1])
        partial = cls(config, featurizer, quantizer, {})
        return cls(config, featurizer, quantizer, {i: partial.sid(row) for i, row in zip(ids, codes.tolist())})

    def codes(self, items: Mapping[str, Mapping]) -> torch.Tensor:
        """(N, levels) codeword indices of ``items``, in the mapping's order."""
        if not items:
            return torch.zeros(0, self.config.levels, dtype=torch.long)
        return self.quantizer.encode(self.featurizer.embed(list(items.values())))

    def sid(self, codes: list[int]) -> tuple[str, ...]:
        """Codeword indices -> SID tokens, e.g. ``[3, 17, 250]`` -> ``('<a_3>', '<b_17>', '<c_250>')``."""
        return tuple(f"<{self.config.letters[level]}_{c}>" for level, c in enumerate(codes))

    def encode(self, items: Mapping[str, Mapping]) -> dict[str, tuple[str, ...]]:
        """Item id -> the SID of its text's nearest codeword path."""
        return {i: self.sid(row) for i, row in zip(items, self.codes(items).tolist())}

    def assign(
        self, new_items: Mapping[str, Mapping], existing: Mapping[str, tuple[str, ...]]
    ) -> dict[str, tuple[str, ...]]:
        """``existing`` (item id -> SID) with SIDs for the items of ``new_items`` it lacks; existing entries are
        returned unchanged (the module docstring says what is guaranteed and what the catalog must do)."""
        for item_id, sid in existing.items():
            self._check_sid(item_id, sid)
        out = {i: tuple(sid) for i, sid in existing.items()}
        fresh = {i: entry for i, entry in new_items.items() if i not in out}
        out.update(self.encode(fresh))
        return out

    def _check_sid(self, item_id: str, sid: tuple[str, ...]) -> None:
        # An existing SID of another shape cannot live in one catalog with the codes this tokenizer gives.
        try:
            tokens = parse_sid("".join(sid))
        except CatalogError as exc:
            raise ValueError(f"existing item {item_id}: {exc}") from None
        letters = "".join(t[1] for t in tokens)
        if letters != self.config.letters:
            raise ValueError(
                f"existing item {item_id}: SID {''.join(sid)} has levels {letters!r}; this tokenizer gives "
                f"{self.config.levels} levels {self.config.letters!r}"
            )
