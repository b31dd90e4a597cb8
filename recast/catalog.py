"""The item catalog and its semantic IDs (SIDs).

An item's SID is a fixed number of level tokens such as ``<a_223><b_80><c_216>``.
Several items can share one SID (the same product listed twice), and a decoder
that maps SID -> item must not be ambiguous, so every item gets one extra
*disambiguation* token, TIGER style: ``<d_0>`` for the first item of a SID,
``<d_1>`` for the second, ... in ascending item-id order. Every item therefore has
the same length (levels + 1), and under renormalised beam scoring a level with a
single allowed token adds exactly log(1) = 0, so unique items pay nothing for it.

Pure: builds from already-parsed Python objects. File reading is in
``recast.dataset``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

SID_TOKEN = re.compile(r"<([a-z])_(\d+)>")


class CatalogError(ValueError):
    """A catalog that cannot be used; the message names what and where."""


def parse_sid(text: str) -> tuple[str, ...]:
    """Split ``"<a_1><b_2><c_3>"`` into its tokens, refusing anything else.

    >>> parse_sid("<a_1><b_22><c_3>")
    ('<a_1>', '<b_22>', '<c_3>')
    """
    tokens = tuple(m.group(0) for m in SID_TOKEN.finditer(text))
    if not tokens or "".join(tokens) != text.strip():
        raise CatalogError(f"malformed SID {text!r}: expected tokens like <a_12><b_3><c_7>")
    return tokens


def sid_text(tokens: tuple[str, ...]) -> str:
    return "".join(tokens)


@dataclass(frozen=True)
class Item:
    item_id: str
    title: str
    brand: str
    sid: tuple[str, ...]  # the data set's SID, without the disambiguation token
    code: tuple[str, ...]  # sid + disambiguation token: what the policy decodes


@dataclass(frozen=True)
class Catalog:
    """Items in a stable order; ``index`` maps an item id to its position."""

    items: tuple[Item, ...]
    disambiguation_level: str
    index: dict[str, int] = field(repr=False, compare=False)
    by_code: dict[tuple[str, ...], int] = field(repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def code_length(self) -> int:
        return len(self.items[0].code)

    def position(self, item_id: str) -> int:
        try:
            return self.index[item_id]
        except KeyError:
            raise KeyError(f"unknown item id {item_id!r}") from None

    def unknown(self, item_ids: list[str]) -> list[str]:
        """The ids among ``item_ids`` that are not in the catalog, in order."""
        return [i for i in item_ids if i not in self.index]

    @property
    def colliding_sids(self) -> dict[tuple[str, ...], list[str]]:
        groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for item in self.items:
            groups[item.sid].append(item.item_id)
        return {sid: ids for sid, ids in groups.items() if len(ids) > 1}


def _id_order(item_id: str) -> tuple[int, int | str]:
    # Numeric ids sort numerically ("9" < "10"); anything else sorts as text after them.
    return (0, int(item_id)) if item_id.isdigit() else (1, item_id)


def build_catalog(
    titles: dict[str, str], sids: dict[str, tuple[str, ...]], brands: dict[str, str] | None = None
) -> Catalog:
    """Build a catalog from item titles and SIDs (both keyed by item id); brands are optional.

    Every item needs both a title entry and a SID, all SIDs the same number of
    levels, and each level its own letter (``<a_..>`` first, ``<b_..>`` second ...).
    """
    if not sids:
        raise CatalogError("the catalog is empty: no SIDs")
    missing = sorted(set(sids) ^ set(titles), key=_id_order)
    if missing:
        raise CatalogError(f"{len(missing)} item ids appear in only one of items and SIDs, e.g. {missing[:5]}")
    ids = sorted(sids, key=_id_order)
    depth = len(sids[ids[0]])
    letters: list[str | None] = [None] * depth
    for item_id in ids:
        sid = sids[item_id]
        if len(sid) != depth:
            raise CatalogError(f"item {item_id}: SID {sid_text(sid)} has {len(sid)} levels, others have {depth}")
        for level, token in enumerate(sid):
            match = SID_TOKEN.fullmatch(token)
            if match is None:
                raise CatalogError(f"item {item_id}: malformed SID token {token!r}")
            letter = match.group(1)
            if letters[level] is None:
                letters[level] = letter
            elif letters[level] != letter:
                raise CatalogError(
                    f"item {item_id}: level {level} token {token} should start with "
                    f"'<{letters[level]}_' like the other items"
                )
    if len(set(letters)) != depth:
        raise CatalogError(f"SID levels must use distinct letters, got {letters}")
    disambiguation = next(c for c in "abcdefghijklmnopqrstuvwxyz"[depth:] + "xyz" if c not in letters)

    seen: dict[tuple[str, ...], int] = defaultdict(int)
    items = []
    for item_id in ids:
        sid = sids[item_id]
        code = sid + (f"<{disambiguation}_{seen[sid]}>",)
        seen[sid] += 1
        brand = (brands or {}).get(item_id) or ""
        items.append(Item(item_id=item_id, title=titles[item_id], brand=brand, sid=sid, code=code))
    return Catalog(
        items=tuple(items),
        disambiguation_level=disambiguation,
        index={item.item_id: i for i, item in enumerate(items)},
        by_code={item.code: i for i, item in enumerate(items)},
    )
