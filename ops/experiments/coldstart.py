"""Cold start: can items added online, with text only, be recommended before anyone bought them?

1. Hold out ``--item-share`` of the items (seeded) and ``--user-share`` of the users. The base data set keeps
   the other items with their shipped SIDs; training rows are the other users' rows that touch no held-out item
   (history or target): nothing about a held-out item is learnt.
2. Train the policy on the base (``learner.sft_trainer.train_sft``, the ``--preset``).
3. Add the held-out items with their ``items.json`` text only, as ``POST /v1/admin/items`` does: codes from
   ``recast.sids.served.ServedCoder`` over the base catalog, the catalog appended, the checkpoint grown
   (``recast.added_items.grow_checkpoint``: no new weights, text-scorer rows, no transitions).
4. On the held-out users' rows (``valid.csv`` only; the test split is never read):
   - *cold* rows (target a held-out item): HR@10 / NDCG@10 of the served ranking (beam + fusion), of the text
     scorer alone, and of a list of 10 random new items (expected HR@10 = 10 / number of new items);
   - *warm* rows (no held-out item anywhere): the served ranking before adding (base model) and after, so adding
     items does not cost the rest.

Training is the long part: run it on a machine with time (the smoke line takes a few minutes on 2 cores):

    python -m ops.experiments.coldstart --out runs/coldstart --preset default
    python -m ops.experiments.coldstart --out /tmp/coldstart-smoke --preset tiny --epochs 1 --max-train-rows 3000
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import logging
import random
from dataclasses import replace
from pathlib import Path

import torch

log = logging.getLogger("coldstart")
K = 10


def split(data: Path, item_share: float, user_share: float, seed: int) -> tuple[set[str], set[str]]:
    """(held-out items, held-out users), each a seeded sample."""
    rng = random.Random(seed)
    items = sorted(json.loads((data / "items.json").read_text()))
    with (data / "valid.csv").open(newline="") as f:
        users = sorted({row["user_id"] for row in csv.DictReader(f)})
    held_items = set(rng.sample(items, round(item_share * len(items))))
    return held_items, set(rng.sample(users, round(user_share * len(users))))


def write_base(data: Path, out: Path, held_items: set[str], held_users: set[str], max_rows: int | None) -> dict:
    """The base data set: the kept items (files copied verbatim but for the held-out items) and the training rows."""
    out.mkdir(parents=True, exist_ok=True)
    items = json.loads((data / "items.json").read_text())
    sids = json.loads((data / "sid_index.json").read_text())
    (out / "items.json").write_text(json.dumps({i: v for i, v in items.items() if i not in held_items}))
    (out / "sid_index.json").write_text(json.dumps({i: v for i, v in sids.items() if i not in held_items}))
    with (data / "info.txt").open() as f, (out / "info.txt").open("w") as g:
        g.writelines(line for line in f if line.rstrip("\n").split("\t")[-1] not in held_items)
    kept = 0
    with (data / "valid.csv").open(newline="") as f, (out / "valid.csv").open("w", newline="") as g:
        reader = csv.DictReader(f)
        writer = csv.DictWriter(g, fieldnames=reader.fieldnames, lineterminator="\n")
        writer.writeheader()
        for row in reader:
            touched = {row["item_id"], *(str(i) for i in ast.literal_eval(row["history_item_id"]))}
            if row["user_id"] in held_users or touched & held_items or (max_rows is not None and kept >= max_rows):
                continue
            writer.writerow(row)
            kept += 1
    return {"items": len(items) - len(held_items), "train_rows": kept}


def ranks(recommend, histories: list[list[int]], targets: list[int], batch: int = 64) -> list[int | None]:
    from recast.metrics import rank_of

    out = []
    for start in range(0, len(histories), batch):
        lists = recommend(histories[start:start + batch])
        out += [rank_of(t, [i for i, _ in ranked]) for t, ranked in zip(targets[start:start + batch], lists)]
    return out


def summary(r: list[int | None]) -> dict:
    from recast.metrics import hit_rate, ndcg

    if not r:
        return {"rows": 0}
    return {"rows": len(r), f"hr@{K}": round(hit_rate(r, K), 4), f"ndcg@{K}": round(ndcg(r, K), 4)}


def evaluate(data: Path, ckpt_dir: Path, held_items: set[str], held_users: set[str], beam_width: int) -> dict:
    from recast.added_items import added_item, grow_checkpoint
    from recast.catalog import append_items, sid_text
    from recast.checkpoint import load_checkpoint
    from recast.dataset import load_catalog, load_interactions, load_item_entries
    from recast.recommender import Recommender
    from recast.sids.served import ServedCoder

    base_ckpt = load_checkpoint(ckpt_dir)
    base = load_catalog(ckpt_dir.parent / "base")
    entries = load_item_entries(data)
    coder = ServedCoder.from_catalog(base, entries, known_tokens=base_ckpt.tokenizer.vocab)
    new = {i: entries[i] for i in sorted(held_items)}
    codes = coder.assign(new)
    grown = append_items(base, [added_item(i, sid_text(codes[i]), new[i]) for i in codes])
    grown_ckpt = grow_checkpoint(base_ckpt, grown)
    served = {"before": Recommender.from_checkpoint(base_ckpt, beam_width),
              "after": Recommender.from_checkpoint(grown_ckpt, beam_width)}  # fmt: skip

    rows = [r for r in load_interactions(data / "valid.csv", load_catalog(data)) if r.user_id in held_users]
    cold = [r for r in rows if r.target in held_items]
    warm = [r for r in rows if r.target not in held_items and not held_items & set(r.history)]
    at = grown.index

    def positions(rs):
        return [[at[i] for i in r.history] for r in rs], [at[r.target] for r in rs]

    ch, ct = positions(cold)
    wh, wt = positions(warm)
    text = grown_ckpt.text
    text_top = lambda hs: [[(i, 0.0) for i in torch.topk(s, K).indices.tolist()]  # noqa: E731
                           for s in text.scores_batch(hs)]  # fmt: skip
    n_new = len(held_items)
    result = {
        "new_items": n_new,
        "codes": {"disambiguation_tokens": sorted({c[-1] for c in codes.values()}),
                  "beyond_d_0": sum(c[-1] != f"<{base.disambiguation_level}_0>" for c in codes.values())},  # fmt: skip
        "cold": {
            "served": summary(ranks(lambda hs: served["after"].recommend(hs, K), ch, ct)),
            "text": summary(ranks(text_top, ch, ct)),
            "random_new_item": {"rows": len(cold), f"hr@{K}": round(min(K, n_new) / n_new, 4)},
        },
        "warm": {
            "before": summary(ranks(lambda hs: served["before"].recommend(hs, K), wh, wt)),
            "after": summary(ranks(lambda hs: served["after"].recommend(hs, K), wh, wt)),
        },
    }
    # How often the served lists hold any new item at all (on the cold rows: is the policy + text path open?).
    lists = [ranked for s in range(0, len(ch), 64) for ranked in served["after"].recommend(ch[s:s + 64], K)]
    result["cold"]["lists_with_a_new_item"] = round(sum(any(i >= len(base) for i, _ in r) for r in lists)
                                                    / max(1, len(lists)), 4)  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.experiments.coldstart", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"))
    parser.add_argument("--out", type=Path, default=Path("runs/coldstart"))
    parser.add_argument("--item-share", type=float, default=0.1)
    parser.add_argument("--user-share", type=float, default=0.2)
    parser.add_argument("--preset", default="default", help="SFT preset (recast.sft.PRESETS)")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--max-train-rows", type=int, default=None, help="cap the training rows (a smoke run)")
    parser.add_argument("--beam-width", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from learner.sft_trainer import train_sft
    from recast.sft import preset

    held_items, held_users = split(args.data, args.item_share, args.user_share, args.seed)
    made = write_base(args.data, args.out / "base", held_items, held_users, args.max_train_rows)
    log.info("held out %d items and %d users; base: %s", len(held_items), len(held_users), made)
    config = preset(args.preset)
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    ckpt = args.out / "ckpt"
    if not (ckpt / "manifest.json").exists():
        train_sft(args.out / "base", args.out / "base" / "valid.csv", config, ckpt, progress=True)
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "base": made,
              **evaluate(args.data, ckpt, held_items, held_users, args.beam_width)}  # fmt: skip
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    log.info("%s", json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
