"""Catalog versions: which items exist, each item's code, and which items are retired, as one value with a hash.

Versions form an append-only history. Version N+1 *extends* N when every item of N is still there with the
same code, and every item retired in N is still retired for the same reason. Items may be added (a later
part adds them online) and live items may be retired. Nothing else may change. So a model trained on
version N can serve any version that extends N: every code it decodes still names the same item, and no
retired item comes back.

The hash (:func:`catalog_digest`) covers every (item, code, state) triple. A checkpoint's manifest
(:mod:`recast.checkpoint`) and Postgres (``schemas/catalog.py``) both record it, so either side can check a
version's contents against its name.

Pure: the database ledger is in ``schemas/catalog.py`` and the service's live copy in ``serving/catalog.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from recast.catalog import Catalog, sid_text

LIVE = "live"
# Why an item left the catalog. out_of_stock is as final as retired here: an item that comes back is added again
# as a new item (a later part). The reasons exist so the audit can tell the two apart.
RETIRE_REASONS = ("retired", "out_of_stock")
SHOWN = 5  # ids named in an error: enough to find the problem


class CatalogVersionError(ValueError):
    """A catalog change that cannot be made, or a version that is not what it claims to be. The message says why."""


def catalog_digest(codes: Mapping[str, str], retired: Mapping[str, str]) -> str:
    """sha256 hex of every ``item \\t code \\t state`` line, sorted by item id. The state is ``live`` or the
    retirement reason.

    >>> a = catalog_digest({"1": "<a_1><b_0>", "2": "<a_2><b_0>"}, {})
    >>> a == catalog_digest({"2": "<a_2><b_0>", "1": "<a_1><b_0>"}, {})  # order does not matter
    True
    >>> a == catalog_digest({"1": "<a_1><b_0>", "2": "<a_2><b_0>"}, {"2": "retired"})  # the state does
    False
    """
    digest = hashlib.sha256()
    for item_id in sorted(codes):
        digest.update(f"{item_id}\t{codes[item_id]}\t{retired.get(item_id, LIVE)}\n".encode())
    return digest.hexdigest()


def _ids(ids: Iterable[str]) -> str:
    ids = list(ids)
    more = f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else ""
    return ", ".join(repr(i) for i in ids[:SHOWN]) + more


@dataclass(frozen=True)
class CatalogVersion:
    """One version's contents. ``version`` is the id Postgres gave it; it is None for a catalog that was never
    recorded (a data set's base, or an old checkpoint's)."""

    codes: Mapping[str, str]  # item id -> code text, e.g. "<a_1><b_2><c_3><d_0>"
    retired: Mapping[str, str] = field(default_factory=dict)  # item id -> reason (one of RETIRE_REASONS)
    version: int | None = None

    def __post_init__(self) -> None:
        # Read-only copies: a version is a value. A caller that kept the dicts cannot change it afterwards.
        object.__setattr__(self, "codes", MappingProxyType(dict(self.codes)))
        object.__setattr__(self, "retired", MappingProxyType(dict(self.retired)))
        unknown = [i for i in self.retired if i not in self.codes]
        if unknown:
            raise CatalogVersionError(f"retired items that the catalog does not hold: {_ids(unknown)}")
        bad = sorted({r for r in self.retired.values() if r not in RETIRE_REASONS})
        if bad:
            raise CatalogVersionError(f"retirement reasons must be one of {', '.join(RETIRE_REASONS)}, got {bad}")

    @cached_property
    def digest(self) -> str:
        return catalog_digest(self.codes, self.retired)

    @property
    def name(self) -> str:
        """How messages name it: ``version 3``, or ``catalog 1a2b3c4d5e6f`` when it was never recorded."""
        return f"version {self.version}" if self.version is not None else f"catalog {self.digest[:12]}"

    def state(self, item_id: str) -> str:
        return self.retired.get(item_id, LIVE)

    def retire(self, item_ids: Iterable[str], reason: str) -> tuple[CatalogVersion, list[str], list[str]]:
        """The next version's contents with ``item_ids`` retired for ``reason``. Returns it (``version`` None:
        Postgres numbers it), the ids newly retired and the ids already retired, each once in the given order.
        An already retired item keeps its first reason, because a version never rewrites what an earlier one
        recorded. Unknown ids raise, so a typo never looks like a success."""
        if reason not in RETIRE_REASONS:
            raise CatalogVersionError(f"reason must be one of {', '.join(RETIRE_REASONS)}, got {reason!r}")
        ids = list(dict.fromkeys(item_ids))
        unknown = [i for i in ids if i not in self.codes]
        if unknown:
            raise CatalogVersionError(f"{len(unknown)} unknown item id(s): {_ids(unknown)}")
        newly = [i for i in ids if i not in self.retired]
        already = [i for i in ids if i in self.retired]
        return CatalogVersion(self.codes, {**self.retired, **{i: reason for i in newly}}), newly, already

    def add(self, codes: Mapping[str, str]) -> CatalogVersion:
        """The next version's contents with ``codes`` (item id -> code text) added, live. An id or a code this
        version already holds raises: a version never renames an item or gives two items one code."""
        taken = [i for i in codes if i in self.codes]
        if taken:
            raise CatalogVersionError(f"{len(taken)} item id(s) are already in {self.name}: {_ids(taken)}")
        held = {code: i for i, code in self.codes.items()}
        clash = [i for i, code in codes.items() if code in held]
        if clash or len(set(codes.values())) != len(codes):
            raise CatalogVersionError(f"codes already held: {_ids(clash) if clash else 'two new items share one'}")
        return CatalogVersion({**self.codes, **codes}, self.retired)

    def manifest_entry(self) -> dict:
        """What a checkpoint's manifest records: the version and its digest, and the retired items. The codes are
        not repeated, because ``item_codes.json`` holds them."""
        return {"version": self.version, "digest": self.digest, "retired": dict(sorted(self.retired.items()))}


def recorded_version(
    codes: Mapping[str, str], retired: Mapping[str, str], version: int, digest: str
) -> CatalogVersion:
    """A version read back from where it was recorded, refused unless its items hash to the digest recorded with
    it (a ledger changed outside recast)."""
    state = CatalogVersion(codes, retired, version)
    if state.digest != digest:
        raise CatalogVersionError(f"catalog version {version}: the ledger's items hash to {state.digest[:12]}, not "
                                  f"to the recorded {digest[:12]} (changed outside recast?)")  # fmt: skip
    return state


def base_version(catalog: Catalog) -> CatalogVersion:
    """A data set's catalog as a version: every item live, never recorded."""
    return CatalogVersion({item.item_id: sid_text(item.code) for item in catalog.items})


def from_manifest(entry: object, codes: Mapping[str, str]) -> CatalogVersion:
    """The version a checkpoint names (its manifest's ``catalog`` entry, over the item codes it holds). The entry
    must hash to its own digest, so an edited manifest cannot claim a different catalog."""
    if not isinstance(entry, dict) or not isinstance(entry.get("retired"), dict):
        raise CatalogVersionError("the catalog entry must be an object with a 'retired' object")
    number = entry.get("version")
    if number is not None and (not isinstance(number, int) or isinstance(number, bool) or number < 1):
        raise CatalogVersionError(f"catalog version must be a positive integer or null, got {number!r}")
    version = CatalogVersion(codes, entry["retired"], number)
    if entry.get("digest") != version.digest:
        raise CatalogVersionError(f"catalog digest {str(entry.get('digest'))[:12]!r} is not the digest of the item "
                                  f"codes and retired items it names ({version.digest[:12]})")  # fmt: skip
    return version


def extension_problem(old: CatalogVersion, new: CatalogVersion) -> str | None:
    """Why ``new`` does not extend ``old``, or None when it does.

    >>> v1 = CatalogVersion({"1": "<a_1>", "2": "<a_2>"}, version=1)
    >>> v2 = CatalogVersion(v1.codes, {"2": "retired"}, version=2)
    >>> extension_problem(v1, v2) is None, extension_problem(v2, v1)
    (True, "item '2' is retired in version 2 but live in version 1")
    """
    old_name = old.name
    gone = [i for i in old.codes if i not in new.codes]
    if gone:
        return f"{len(gone)} item(s) of {old_name} are missing from {new.name}: {_ids(gone)}"
    moved = [i for i in old.codes if new.codes[i] != old.codes[i]]
    if moved:
        first = moved[0]
        return (f"{len(moved)} item(s) changed code, e.g. item {first!r} is {old.codes[first]} in {old_name} "
                f"and {new.codes[first]} in {new.name}")  # fmt: skip
    back = [i for i in old.retired if new.retired.get(i) != old.retired[i]]
    if back:
        first = back[0]
        return f"item {first!r} is {old.retired[first]} in {old_name} but {new.state(first)} in {new.name}"
    return None


def extends(old: CatalogVersion, new: CatalogVersion) -> bool:
    return extension_problem(old, new) is None
