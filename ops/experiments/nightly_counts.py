"""What one night's counts buy on items added online: learning from logged traffic that reaches the served list.

    python -m ops.experiments.nightly_counts --seeds 0,1,2,3

Why (issue 15, thirteenth round): on the shipped users a night's logged lists hold rows of the kind the models were
trained on, and nothing learnt from them reaches the served list measurably. Items added online are where traffic
holds what training did not: until someone buys one, the served ranking knows it by its text alone.

For each seed, the cold-start split of ``ops.experiments.coldstart`` (10% of the items and 20% of the users held
out; the policy trained on the other users' rows that touch no held-out item, ``--preset``), then the held-out
items added with their text only, as served (used codes, nothing borrowed). The held-out users are split into two
days by a seeded hash. Day 1's rows are what the night's logged lists hold (each row: the shopper's history and
the item they bought), counted exactly as the nightly refresh counts them (``learner.refresh.learn.sequences`` at
the policy's prompt length, then ``refresh_scorers``); the policy and the ranker are kept, as a refresh keeps the
ranker. Day 2's rows are ranked by the served ranking before the night and after it:

- *cold* rows (a held-out target), all of them and those whose new item someone bought on day 1;
- *warm* rows (no held-out item anywhere), so the counts cost the old targets nothing.

Paired bootstrap intervals on hit@10 per row, per seed and over the seeds' rows pooled. The test split is never
read. A seed trains one ``default`` policy (3-5 minutes on one thread) and scores in under a minute.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import replace
from pathlib import Path


def measure(data: Path, out: Path, held_items: set[str], held_users: set[str], seed: int, beam_width: int) -> dict:
    """Day 2's per-row ranks before and after the night's counts (module doc)."""
    from learner.ranker_trainer import user_fold
    from learner.refresh.learn import refresh_scorers, sequences
    from ops.experiments.coldstart import K, add_online, lists_of, partition, ranks
    from recast.checkpoint import load_checkpoint
    from recast.dataset import load_catalog, load_interactions, load_item_entries
    from recast.recommender import Recommender
    from recast.sids.served import ServedCoder

    base_ckpt = load_checkpoint(out / "ckpt")
    base = load_catalog(out / "base")
    entries = load_item_entries(data)
    coder = ServedCoder.from_catalog(base, entries, known_tokens=base_ckpt.tokenizer.vocab)
    _, grown, ckpt = add_online(coder, base, base_ckpt, {i: entries[i] for i in sorted(held_items)})
    rows = [r for r in load_interactions(data / "valid.csv", load_catalog(data)) if r.user_id in held_users]
    day1 = [r for r in rows if user_fold(r.user_id, 2, seed) == 0]
    day2 = [r for r in rows if user_fold(r.user_id, 2, seed) == 1]
    counted = sequences(day1, grown, ckpt.prompt_history())
    transition, _ = refresh_scorers(ckpt, grown, counted)
    bought = {r.target for r in day1} & held_items
    cold, warm, _ = partition(day2, held_items)
    at = grown.index
    before = Recommender.from_checkpoint(ckpt, beam_width)
    after = replace(before, transition=transition)

    def ranked(rec: Recommender, part: list) -> list:
        histories = [[at[i] for i in r.history] for r in part]
        return ranks(lists_of(lambda hs, _: rec.recommend(hs, K), histories), [at[r.target] for r in part])

    return {
        "new_items": len(held_items), "day1_rows": len(day1), "counted_windows": len(counted),
        "new_items_bought_on_day1": len(bought),
        "cold_bought": [r.target in bought for r in cold],
        "cold_before": ranked(before, cold), "cold_after": ranked(after, cold),
        "warm_before": ranked(before, warm), "warm_after": ranked(after, warm),
    }  # fmt: skip


def report(runs: dict[int, dict]) -> dict:
    """Per seed and pooled: HR@10 before and after on each kind of day-2 row, and the paired difference."""
    from ops.experiments.coldstart import hits, interval, summary

    def kinds(run: dict) -> dict[str, tuple[list, list]]:
        bought = run["cold_bought"]
        pick = lambda xs: [x for x, b in zip(xs, bought, strict=True) if b]  # noqa: E731
        return {"cold": (run["cold_before"], run["cold_after"]),
                "cold, its item bought on day 1": (pick(run["cold_before"]), pick(run["cold_after"])),
                "warm": (run["warm_before"], run["warm_after"])}  # fmt: skip

    def figures(pairs: list[tuple[list, list]]) -> dict:
        b = [x for p in pairs for x in p[0]]
        a = [x for p in pairs for x in p[1]]
        return {"before": summary(b), "after": summary(a), "after_minus_before": interval(hits(a), hits(b))}

    per_seed = {seed: {k: figures([v]) for k, v in kinds(run).items()} for seed, run in runs.items()}
    names = list(next(iter(per_seed.values())))
    pooled = {k: figures([kinds(run)[k] for run in runs.values()]) for k in names}
    return {"seeds": per_seed, "pooled": pooled,
            "counts": {s: {k: v for k, v in r.items() if not isinstance(v, list)} for s, r in runs.items()}}


def table(result: dict) -> str:
    lines = ["| seed | rows | n | HR@10 / NDCG@10 before | after | after − before (HR@10) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for seed, kinds in [*result["seeds"].items(), ("pooled", result["pooled"])]:
        for kind, f in kinds.items():
            d = f["after_minus_before"]
            change = "" if d.get("rows", 0) == 0 else f"{d['diff']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"
            b, a = (f"{x.get('hr@10', 0):.4f} / {x.get('ndcg@10', 0):.4f}" for x in (f["before"], f["after"]))
            lines.append(f"| {seed} | {kind} | {f['before']['rows']} | {b} | {a} | {change} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.experiments.nightly_counts",
                                     description=__doc__.split("\n\n")[0],
                                     epilog="Writes OUT/seed-N/ranks.json and OUT/result.json; prints the table.")
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"), help="data set directory")
    parser.add_argument("--out", type=Path, default=Path("runs/nightly-counts"), help="where the seeds' runs go")
    parser.add_argument("--preset", default="default", help="SFT preset (recast.sft.PRESETS)")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs (a smoke run)")
    parser.add_argument("--beam-width", type=int, default=20, help="the policy's beam, as coldstart scores")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--pool-only", action="store_true", help="train and score nothing: pool the seeds' saved "
                        "ranks (OUT/seed-N/ranks.json, e.g. from runs of a few seeds each, side by side)")
    args = parser.parse_args(argv)

    import torch

    from ops.experiments.coldstart import prepare

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(int(os.environ.get("RECAST_TORCH_THREADS", "2")))
    runs = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        out = args.out / f"seed-{seed}"
        if not args.pool_only:
            held_items, held_users, _, _ = prepare(args.data, out, seed, args.preset, args.epochs)
            run = measure(args.data, out, held_items, held_users, seed, args.beam_width)
            (out / "ranks.json").write_text(json.dumps(run))
        runs[seed] = json.loads((out / "ranks.json").read_text())
    result = report(runs)
    (args.out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
