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


def id_order(item_id: str) -> tuple[int, int | str]:
    """The catalog's item order: numeric ids numerically ("9" < "10"), anything else as text after them."""
    return (0, int(item_id)) if item_id.isdigit() else (1, item_id)


def _level_letters(ids: list[str], sids: dict[str, tuple[str, ...]], depth: int,
                   letters: list[str | None] | None = None) -> list[str | None]:  # fmt: skip
    """Each level's letter, checking every SID has ``depth`` levels and level ``l`` always uses one letter
    (``letters`` pins them, e.g. an existing catalog's)."""
    letters = list(letters) if letters is not None else [None] * depth
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
    return letters


def _catalog(items: list[Item], disambiguation: str) -> Catalog:
    return Catalog(
        items=tuple(items),
        disambiguation_level=disambiguation,
        index={item.item_id: i for i, item in enumerate(items)},
        by_code={item.code: i for i, item in enumerate(items)},
    )


def _check_paired(titles: dict[str, str], sids: dict[str, tuple[str, ...]]) -> None:
    missing = sorted(set(sids) ^ set(titles), key=id_order)
    if missing:
        raise CatalogError(f"{len(missing)} item ids appear in only one of items and SIDs, e.g. {missing[:5]}")


def _numbered(ids, titles, sids, brands, level: str, next_index: dict[tuple[str, ...], int]) -> list[Item]:
    """Items of ``ids`` in order, each taking its SID's next free disambiguation index (``next_index``, SID ->
    index, updated): from 0 for a new catalog, one past the largest held for an extended one."""
    items = []
    for item_id in ids:
        sid = sids[item_id]
        code = sid + (f"<{level}_{next_index[sid]}>",)
        next_index[sid] += 1
        items.append(Item(item_id=item_id, title=titles[item_id], brand=(brands or {}).get(item_id) or "", sid=sid,
                          code=code))  # fmt: skip
    return items


def build_catalog(
    titles: dict[str, str], sids: dict[str, tuple[str, ...]], brands: dict[str, str] | None = None
) -> Catalog:
    """Build a catalog from item titles and SIDs (both keyed by item id); brands are optional.

    Every item needs both a title entry and a SID, all SIDs the same number of
    levels, and each level its own letter (``<a_..>`` first, ``<b_..>`` second ...).
    Items are ordered by :func:`id_order` and numbered within a SID in that order, so
    a catalog rebuilt with a new item whose id sorts before an existing item of the
    same SID renumbers that item: :func:`extend_catalog` grows a catalog without that.
    """
    if not sids:
        raise CatalogError("the catalog is empty: no SIDs")
    _check_paired(titles, sids)
    ids = sorted(sids, key=id_order)
    depth = len(sids[ids[0]])
    letters = _level_letters(ids, sids, depth)
    if len(set(letters)) != depth:
        raise CatalogError(f"SID levels must use distinct letters, got {letters}")
    disambiguation = next(c for c in "abcdefghijklmnopqrstuvwxyz"[depth:] + "xyz" if c not in letters)

    items = _numbered(ids, titles, sids, brands, disambiguation, defaultdict(int))
    return _catalog(items, disambiguation)


def extend_catalog(
    catalog: Catalog,
    titles: dict[str, str],
    sids: dict[str, tuple[str, ...]],
    brands: dict[str, str] | None = None,
) -> Catalog:
    """``catalog`` with new items appended (in :func:`id_order`): every existing item keeps its position and
    its code, disambiguation index included; a new item gets the next free index of its SID (one past the
    largest any item of that SID holds), whatever its id.

    A policy decodes positions through its checkpoint's ``item_codes.json``, so this is how a served
    catalog grows: :func:`build_catalog` over the union would renumber an existing item whose SID a new
    item with a lower id joins.
    """
    _check_paired(titles, sids)
    known = sorted((i for i in sids if i in catalog.index), key=id_order)
    if known:
        raise CatalogError(f"{len(known)} new item(s) are already in the catalog, e.g. {known[:5]}")
    ids = sorted(sids, key=id_order)
    depth = len(catalog.items[0].sid)
    existing_letters = [SID_TOKEN.fullmatch(t).group(1) for t in catalog.items[0].sid]
    _level_letters(ids, sids, depth, existing_letters)
    next_index: dict[tuple[str, ...], int] = defaultdict(int)
    for item in catalog.items:
        index = int(SID_TOKEN.fullmatch(item.code[-1]).group(2))
        next_index[item.sid] = max(next_index[item.sid], index + 1)
    items = [*catalog.items, *_numbered(ids, titles, sids, brands, catalog.disambiguation_level, next_index)]
    return _catalog(items, catalog.disambiguation_level)


def append_items(catalog: Catalog, items: list[Item]) -> Catalog:
    """``catalog`` with ``items`` appended in the given order, each with the code it already has (items added
    online, read back from the catalog ledger in the order they were added). Every existing item keeps its
    position; an id or a code the catalog already holds, or a code of another shape, raises."""
    taken = [i.item_id for i in items if i.item_id in catalog.index]
    if taken:
        raise CatalogError(f"{len(taken)} item(s) are already in the catalog, e.g. {taken[:5]}")
    shape = [SID_TOKEN.fullmatch(t).group(1) for t in catalog.items[0].code]
    codes = set(catalog.by_code)
    for item in items:
        letters = [m.group(1) if (m := SID_TOKEN.fullmatch(t)) else None for t in item.code]
        if letters != shape or item.sid != item.code[:-1]:
            raise CatalogError(f"item {item.item_id}: code {sid_text(item.code)} is not of the catalog's shape "
                               f"({''.join(f'<{c}_n>' for c in shape)})")  # fmt: skip
        if item.code in codes:
            raise CatalogError(f"item {item.item_id}: code {sid_text(item.code)} is another item's")
        codes.add(item.code)
    return _catalog([*catalog.items, *items], catalog.disambiguation_level)
