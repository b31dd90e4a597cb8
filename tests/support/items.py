"""Item text for the item tokenizer's tests (``recast.sids``): entries in the ``items.json`` format whose words
make clusters (the kind of product), sub-clusters (its colour) and near-duplicates (the same product twice)."""

from __future__ import annotations

KINDS = {
    "drill": "cordless drill with battery and keyless chuck",
    "saw": "circular saw blade for wood cutting",
    "glue": "epoxy glue adhesive bonds metal plastic",
    "tape": "duct tape roll waterproof adhesive",
    "filament": "pla printer filament spool dimensional accuracy",
    "glove": "nitrile glove disposable powder free",
}
COLOURS = ("red", "blue", "green", "black", "white")
BRANDS = ("acme", "bolt", "zenith")


def item_entries() -> dict[str, dict]:
    """30 items, ids "0".."29": every kind in every colour; items "28" and "29" have the same text."""
    entries = {}
    for kind, description in KINDS.items():
        for colour in COLOURS:
            brand = BRANDS[len(entries) % len(BRANDS)]
            entries[str(len(entries))] = {
                "title": f"{brand.title()} {colour} {kind} pack",
                "description": str([f"{colour} {description}"]),
                "brand": brand,
                "categories": "",
            }
    entries["29"] = dict(entries["28"])
    return entries


def new_entry(title: str, description: str = "", brand: str = "") -> dict:
    return {"title": title, "description": description, "brand": brand, "categories": ""}
