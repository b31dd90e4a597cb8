"""A second catalog in the same format, cut from the shipped one: one top-level category.

The shipped ``items.json`` has no categories (the field is empty), so a top-level category is made
from what the SIDs already encode: the first SID level names a cluster of similar items, and the
clusters' mean text vectors are grouped by k-means into ``k`` broad categories. The category kept is
the one with the most interaction rows whose target falls in it.

Rows: each row's history keeps only the category's items (order kept); a row is kept when its target
is in the category and its filtered history is not empty. Item ids, titles and SIDs are copied
verbatim, so the result loads with ``recast.dataset`` like the original.

    python -m ops.experiments.subcatalog --data data/amazon18-industrial --out runs/subcatalog/data
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import logging
from collections import Counter
from pathlib import Path

import torch

log = logging.getLogger("subcatalog")
HISTORY_COLUMNS = ("history_item_id", "history_item_title", "history_item_sid")


def kmeans(points: torch.Tensor, k: int, generator: torch.Generator, iterations: int = 50) -> torch.Tensor:
    """Cluster id per row of ``points`` (cosine k-means, k-means++-style seeding)."""
    x = torch.nn.functional.normalize(points, dim=1)
    centres = x[torch.randint(len(x), (1,), generator=generator)]
    while len(centres) < k:
        distance = (1 - x @ centres.T).min(dim=1).values.clamp(min=0)
        centres = torch.cat((centres, x[torch.multinomial(distance + 1e-9, 1, generator=generator)]))
    for _ in range(iterations):
        assign = (x @ centres.T).argmax(dim=1)
        centres = torch.nn.functional.normalize(
            torch.stack([x[assign == c].mean(0) if (assign == c).any() else centres[c] for c in range(k)]), dim=1
        )
    return (x @ centres.T).argmax(dim=1)


def category_items(data: Path, k: int, seed: int) -> tuple[set[str], list[str]]:
    """Item ids of the category with the most target rows, and its most frequent title words."""
    from recast.dataset import load_catalog, load_interactions
    from recast.text import TextModel, words
    from recast.text_init import item_vectors

    catalog = load_catalog(data)
    text = TextModel.fit([f"{i.title} {i.brand}" for i in catalog.items])
    vectors = item_vectors(text, 64, torch.Generator().manual_seed(seed))
    first = [item.sid[0] for item in catalog.items]
    clusters = sorted(set(first))
    centroid = torch.stack([vectors[[i for i, f in enumerate(first) if f == c]].mean(0) for c in clusters])
    group_of_cluster = dict(zip(clusters, kmeans(centroid, k, torch.Generator().manual_seed(seed)).tolist()))
    group = [group_of_cluster[f] for f in first]
    targets = Counter(group[catalog.index[r.target]] for r in load_interactions(data / "valid.csv", catalog))
    chosen = targets.most_common(1)[0][0]
    log.info("categories (rows by target): %s; keeping %d", dict(targets), chosen)
    ids = {item.item_id for item, g in zip(catalog.items, group) if g == chosen}
    vocab = Counter(w for item in catalog.items if item.item_id in ids for w in set(words(item.title)) if len(w) > 3)
    return ids, [w for w, _ in vocab.most_common(12)]


def write_subcatalog(data: Path, out: Path, keep: set[str]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    items = json.loads((data / "items.json").read_text())
    sids = json.loads((data / "sid_index.json").read_text())
    (out / "items.json").write_text(json.dumps({i: v for i, v in items.items() if i in keep}, indent=2))
    (out / "sid_index.json").write_text(json.dumps({i: v for i, v in sids.items() if i in keep}))
    with (data / "info.txt").open() as f, (out / "info.txt").open("w") as g:
        g.writelines(line for line in f if line.rstrip("\n").split("\t")[-1] in keep)
    rows = kept = 0
    with (data / "valid.csv").open(newline="") as f, (out / "valid.csv").open("w", newline="") as g:
        reader = csv.DictReader(f)
        writer = csv.DictWriter(g, fieldnames=reader.fieldnames, lineterminator="\n")
        writer.writeheader()
        for row in reader:
            rows += 1
            if row["item_id"] not in keep:
                continue
            columns = {c: ast.literal_eval(row[c]) for c in HISTORY_COLUMNS}
            positions = [j for j, i in enumerate(columns["history_item_id"]) if str(i) in keep]
            if not positions:
                continue
            for c, values in columns.items():
                row[c] = str([values[j] for j in positions])
            writer.writerow(row)
            kept += 1
    return {"items": len(keep), "rows": kept, "source_rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.experiments.subcatalog", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"))
    parser.add_argument("--out", type=Path, default=Path("runs/subcatalog/data"))
    parser.add_argument("--categories", type=int, default=3, help="k of the k-means over first-level clusters")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    keep, top_words = category_items(args.data, args.categories, args.seed)
    summary = {**write_subcatalog(args.data, args.out, keep), "top_title_words": top_words}
    (args.out / "README.md").write_text(
        "A category cut from the shipped catalog by `python -m ops.experiments.subcatalog` "
        f"(k={args.categories}, seed {args.seed}).\n\n```json\n{json.dumps(summary, indent=2)}\n```\n"
    )
    log.info("%s", summary)


if __name__ == "__main__":
    main()
