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
