"""Data the tests read: a small synthetic data set in the shipped format, and slices of the shipped one."""

from __future__ import annotations

import ast
import csv
import json
import random
from pathlib import Path

from tests.support.paths import DATA

HEADER = ["user_id", "history_item_title", "item_title", "history_item_id", "item_id", "history_item_sid", "item_sid"]
NUM_ITEMS = 40
# Items sharing one SID: a pair whose ids sort differently as text ("10" < "9") and a triple.
COLLISIONS = [["9", "10"], ["3", "20", "31"]]


def synthetic_sids() -> dict[str, list[str]]:
    sids = {str(i): [f"<a_{i % 5}>", f"<b_{i % 7}>", f"<c_{i}>"] for i in range(NUM_ITEMS)}
    for first, *rest in COLLISIONS:
        for item_id in rest:
            sids[item_id] = list(sids[first])
    return sids


def synthetic_rows(seed: int = 0) -> list[dict[str, str]]:
    """Rows in the shipped layout; each user's rows chain and users interleave in the file."""
    rng = random.Random(seed)
    sids = {k: "".join(v) for k, v in synthetic_sids().items()}
    per_user = []
    for u in range(12):
        length = 16 if u == 0 else rng.randint(2, 6)  # user 0's histories exceed 10 items
        seq = [str(rng.randrange(NUM_ITEMS)) for _ in range(length)]
        start = 1 if u == 0 else rng.randint(1, length - 1)
        user_rows = []
        for t in range(start, length):
            hist, target = seq[:t][-10:], seq[t]
            user_rows.append(
                {
                    "user_id": f"U{u}",
                    "history_item_title": str([f"Item {i}" for i in hist]),
                    "item_title": f"Item {target}",
                    "history_item_id": str([int(i) for i in hist]),
                    "item_id": target,
                    "history_item_sid": str([sids[i] for i in hist]),
                    "item_sid": sids[target],
                }
            )
        per_user.append(user_rows)
    rows = []
    while any(per_user):  # round robin keeps each user's rows in order
        for user_rows in per_user:
            if user_rows:
                rows.append(user_rows.pop(0))
    return rows


def write_dataset(directory: Path, seed: int = 0) -> Path:
    """A complete synthetic data set (items, SIDs, info.txt, valid.csv) in ``directory``."""
    sids = synthetic_sids()
    items = {i: {"title": f"Item {i}", "description": "", "brand": "", "categories": ""} for i in sids}
    (directory / "items.json").write_text(json.dumps(items, indent=2), encoding="utf-8")
    (directory / "sid_index.json").write_text(json.dumps(sids), encoding="utf-8")
    (directory / "info.txt").write_text(
        "".join(f"{''.join(sid)}\tItem {i}\t{i}\n" for i, sid in sids.items()), encoding="utf-8"
    )
    with (directory / "valid.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(synthetic_rows(seed))
    return directory


def valid_rows(dst: Path, stop: int, start: int = 0, source: Path = DATA / "valid.csv") -> Path:
    """Rows ``start`` to ``stop`` (0-based, header excluded) of the shipped ``valid.csv``, written to ``dst``
    with the header: the "first N rows" file (``valid_rows(path, N)``) that trains and splits in seconds."""
    with source.open(newline="") as f:
        rows = list(csv.reader(f))
    with dst.open("w", newline="") as out:
        csv.writer(out, lineterminator="\n").writerows([rows[0], *rows[1 + start : 1 + stop]])
    return dst


def first_rows(n: int, source: Path = DATA / "valid.csv") -> list[dict[str, str]]:
    """The first ``n`` rows of ``valid.csv`` (or ``source``) as dicts keyed by the header."""
    with source.open(newline="") as f:
        return [row for _, row in zip(range(n), csv.DictReader(f))]


def histories(n: int, source: Path = DATA / "valid.csv") -> list[list[str]]:
    """The item-id histories of the first ``n`` rows of ``valid.csv``, the last 10 of each, as requests send them."""
    return [[str(i) for i in ast.literal_eval(r["history_item_id"])][-10:] for r in first_rows(n, source)]


def shipped_subset(dst: Path, rows: int, source: Path = DATA) -> Path:
    """A data set of the shipped catalog's items that the first ``rows`` rows of ``valid.csv`` mention (histories
    and targets), with those rows: real item text in the shipped format, small enough to fit a tokenizer and
    train on in seconds. ``items.json``, ``sid_index.json`` and ``info.txt`` keep the shipped entries verbatim."""
    dst.mkdir(parents=True, exist_ok=True)
    kept_rows = first_rows(rows, source / "valid.csv")
    ids = {r["item_id"] for r in kept_rows}
    ids |= {str(i) for r in kept_rows for i in ast.literal_eval(r["history_item_id"])}
    items = json.loads((source / "items.json").read_text(encoding="utf-8"))
    sids = json.loads((source / "sid_index.json").read_text(encoding="utf-8"))
    (dst / "items.json").write_text(json.dumps({i: e for i, e in items.items() if i in ids}), encoding="utf-8")
    (dst / "sid_index.json").write_text(json.dumps({i: s for i, s in sids.items() if i in ids}), encoding="utf-8")
    with (source / "info.txt").open(encoding="utf-8") as f:
        lines = [line for line in f if line.rstrip("\n").split("\t")[-1] in ids]
    (dst / "info.txt").write_text("".join(lines), encoding="utf-8")
    valid_rows(dst / "valid.csv", rows, source=source / "valid.csv")
    return dst
