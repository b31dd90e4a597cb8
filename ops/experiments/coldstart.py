"""Cold start: can items added online, with text only, be recommended before anyone bought them?

For each seed of ``--seeds`` (the split's and the training's):

1. Hold out ``--item-share`` of the items (seeded) and ``--user-share`` of the users. The base data set keeps
   the other items with their shipped SIDs; training rows are the other users' rows that touch no held-out item
   (history or target): nothing about a held-out item is learnt.
2. Train the policy on the base (``learner.sft_trainer.train_sft``, the ``--preset``, its seed the seed's).
3. Add the held-out items with their ``items.json`` text only, as ``POST /v1/admin/items`` does: codes from
   ``recast.sids.served.ServedCoder`` over the base catalog (``--codes``: ``used``, a used path plus the next
   ``<d_n>``; ``unused``, an unused path of known tokens plus ``<d_0>``), the catalog appended, the checkpoint
   grown (``recast.added_items.grow_checkpoint``: no new weights, text-scorer rows, and transitions borrowed from
   each new item's nearest known item by text, ``--factors`` x ``--neighbours``; factor 0 borrows nothing).
4. On the held-out users' rows (``valid.csv`` only; the test split is never read):
   - *cold* rows (target a held-out item): HR@10 / NDCG@10 of the served ranking (beam + fusion), of the text
     scorer alone, and of a list of 10 random new items (expected HR@10 = 10 / number of new items);
   - *warm* rows (no held-out item anywhere): the served ranking before adding (base model) and after, so adding
     items does not cost the rest;
   - *mixed* rows (an old target after a history holding a held-out item): before adding, the history without
     the items the catalog does not hold yet; after, the whole history;
   - *all* rows (cold, warm and mixed): before adding, a cold row's target is not in the catalog (a miss).
   Each variant's hit@10 differences (served - text on cold rows, after - before on warm and all rows) get a paired
   bootstrap interval per seed and over the seeds' rows pooled.

The variant is chosen on the first seed alone (the best HR@10 over all rows, old and new targets together; ties:
the best on cold rows); the other seeds confirm it (``confirmation``). ``--impute`` is a probe of what a bigger
share for new items buys and costs, not a product path. A seed takes about a minute on one core:

    python -m ops.experiments.coldstart --out runs/coldstart --seeds 0,1,2,3
    python -m ops.experiments.coldstart --out /tmp/coldstart-smoke --preset tiny --epochs 1 --max-train-rows 3000
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import logging
import os
import random
from dataclasses import replace
from functools import partial
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from recast.sft import SFTConfig

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


def partition(rows: list, held_items: set[str]) -> tuple[list, list, list]:
    """(cold, warm, mixed) rows, each in the given order: a held-out target; no held-out item anywhere; an old
    target after a history holding a held-out item."""
    cold = [r for r in rows if r.target in held_items]
    warm = [r for r in rows if r.target not in held_items and not held_items & set(r.history)]
    mixed = [r for r in rows if r.target not in held_items and held_items & set(r.history)]
    return cold, warm, mixed


def lists_of(recommend, histories: list[list[int]], batch: int = 64) -> list[list[tuple[int, float]]]:
    """Every history's list, ``recommend(chunk, start)`` called one batch at a time (``start``: the chunk's offset,
    for callers that decoded the batches beforehand)."""
    return [r for start in range(0, len(histories), batch) for r in recommend(histories[start:start + batch], start)]


def ranks(lists: list[list[tuple[int, float]]], targets: list[int]) -> list[int | None]:
    from recast.metrics import rank_of

    return [rank_of(t, [i for i, _ in ranked]) for t, ranked in zip(targets, lists, strict=True)]


def summary(r: list[int | None]) -> dict:
    from recast.metrics import hit_rate, ndcg

    if not r:
        return {"rows": 0}
    return {"rows": len(r), f"hr@{K}": round(hit_rate(r, K), 4), f"ndcg@{K}": round(ndcg(r, K), 4)}


def hits(r: list[int | None]) -> list[float]:
    from recast.metrics import per_entry_scores

    return per_entry_scores(r, f"HR@{K}")


def interval(a: list[float], b: list[float], clusters: list[str] | None = None) -> dict:
    """Mean of a - b per row and its 95% paired-bootstrap interval (e.g. hit@10 per row); with ``clusters`` (one a
    row), resampling whole clusters (``recast.metrics.clustered_bootstrap``)."""
    from recast.metrics import clustered_bootstrap, paired_bootstrap

    if not a:
        return {"rows": 0}
    if clusters is None:
        mean, lo, hi = paired_bootstrap(a, b)
    else:
        mean, lo, hi = clustered_bootstrap([x - y for x, y in zip(a, b, strict=True)], clusters)
    return {"rows": len(a), "diff": round(mean, 4), "ci95": [round(lo, 4), round(hi, 4)]}


def text_top(text, histories: list[list[int]]) -> list[list[tuple[int, float]]]:
    """The text scorer alone: its top 10 for each history."""
    return [[(i, 0.0) for i in torch.topk(s, K).indices.tolist()] for s in text.scores_batch(histories)]


def variant_name(codes: str, factor: float, neighbours: int, impute: float, new_share: float | None = None) -> str:
    name = f"codes={codes} factor={factor:g} neighbours={neighbours}"
    name += f" impute={impute:g}" if impute else ""
    return name + (f" new_share={new_share:g}" if new_share is not None else "")


def imputed(rec, histories: list[list[int]], known: int, weight: float) -> torch.Tensor:
    """(B, N) transition scores, each row scaled so its best item scores 1, in which an added item (position
    ``known`` on) scores at least ``weight`` times its text score (scaled the same way): a probe, not a product
    path. An added item has no counts, so its transition score is missing rather than zero; this fills the gap
    with the one signal it has, and measures what that costs the old targets."""
    trans = rec.transition_scores(histories)
    text = rec.text_scores(histories)
    trans = trans / trans.amax(dim=1, keepdim=True).clamp(min=1e-12)
    text = text / text.amax(dim=1, keepdim=True).clamp(min=1e-12)
    trans[:, known:] = torch.maximum(trans[:, known:], weight * text[:, known:])
    return trans


def add_online(coder, base, base_ckpt, new: dict, scheme: str = "used"):
    """The held-out items ``new`` (id -> items.json entry) added as ``POST /v1/admin/items`` adds them: their codes
    (``scheme``: ``used`` or ``unused``, ``ServedCoder.assign``), the grown catalog, and the checkpoint grown over
    it with nothing borrowed."""
    from recast.added_items import Borrow, added_item, grow_checkpoint
    from recast.catalog import append_items, sid_text

    codes = coder.assign(new, unused_paths=scheme == "unused")
    grown = append_items(base, [added_item(i, sid_text(codes[i]), new[i]) for i in codes])
    return codes, grown, grow_checkpoint(base_ckpt, grown, Borrow(factor=0.0))


def evaluate(data: Path, ckpt_dir: Path, held_items: set[str], held_users: set[str], beam_width: int,
             code_schemes: list[str], factors: list[float], neighbours: list[int],
             imputes: list[float], rankers: dict[float | None, object]) -> dict:  # fmt: skip
    """The seed's figures: per-row ranks of every ranking, and each variant's summary. ``rankers``: the learned
    rankers to serve, by the share of items their folds hid as added (None: the checkpoint's own)."""
    from recast.added_items import Borrow, borrowed_transitions
    from recast.checkpoint import load_checkpoint
    from recast.dataset import load_catalog, load_interactions, load_item_entries
    from recast.recommender import Recommender
    from recast.sids.served import ServedCoder

    base_ckpt = load_checkpoint(ckpt_dir)
    base = load_catalog(ckpt_dir.parent / "base")
    entries = load_item_entries(data)
    coder = ServedCoder.from_catalog(base, entries, known_tokens=base_ckpt.tokenizer.vocab)
    new = {i: entries[i] for i in sorted(held_items)}
    rows = [r for r in load_interactions(data / "valid.csv", load_catalog(data)) if r.user_id in held_users]
    cold, warm, mixed = partition(rows, held_items)
    before = Recommender.from_checkpoint(base_ckpt, beam_width)
    rankers = {share: base_ckpt.ranker if ranker is None else ranker for share, ranker in rankers.items()}
    n_new = len(held_items)
    out = {"new_items": n_new, "cold_rows": len(cold), "warm_rows": len(warm), "mixed_rows": len(mixed), "codes": {},
           "variants": {}}  # fmt: skip
    text_ranks = warm_before = mixed_before = None
    old_paths = set(coder.paths)
    for scheme in code_schemes:
        codes, grown, unborrowed = add_online(coder, base, base_ckpt, new, scheme)
        served = Recommender.from_checkpoint(unborrowed, beam_width)
        at = grown.index
        ch, ct = [[at[i] for i in r.history] for r in cold], [at[r.target] for r in cold]
        wh, wt = [[at[i] for i in r.history] for r in warm], [at[r.target] for r in warm]
        mh, mt = [[at[i] for i in r.history] for r in mixed], [at[r.target] for r in mixed]
        out["codes"][scheme] = {
            "disambiguation_tokens": sorted({c[-1] for c in codes.values()}),
            "beyond_d_0": sum(c[-1] != f"<{base.disambiguation_level}_0>" for c in codes.values()),
            "paths_shared_with_an_old_item": sum(c[:-1] in old_paths for c in codes.values())}  # fmt: skip
        if text_ranks is None:  # the text scorer and the base model do not depend on the codes
            text = unborrowed.text
            text_ranks = ranks(lists_of(lambda hs, _, text=text: text_top(text, hs), ch), ct)
            # The base catalog's positions are the grown one's first ones, so the same histories serve it.
            # Before adding, no item is marked added, so every ranker that differs only in new_share is scored.
            def before_ranks(histories: list[list[int]], targets: list[int]) -> dict:
                return {share: ranks(lists_of(lambda hs, _, r=r: replace(before, ranker=r).recommend(hs, K),
                                              histories), targets) for share, r in rankers.items()}  # fmt: skip

            warm_before = before_ranks(wh, wt)
            # Before adding, a mixed row's history holds only the items the catalog had (every one of its
            # held-out items was bought after it was added).
            mixed_before = before_ranks([[i for i in h if i < len(base)] for h in mh], mt)
        # The policy's beams depend on the codes only; each borrowing variant re-fuses them.
        beams = {"cold": [served.policy(ch[s:s + 64]) for s in range(0, len(ch), 64)],
                 "warm": [served.policy(wh[s:s + 64]) for s in range(0, len(wh), 64)],
                 "mixed": [served.policy(mh[s:s + 64]) for s in range(0, len(mh), 64)]}  # fmt: skip
        for factor, k, impute, share in product(factors, neighbours, imputes, rankers):
            if (factor == 0.0 and k != neighbours[0]) or (impute and factor):
                continue  # borrowing nothing from 1 or 3 neighbours is one variant; imputing replaces borrowing
            transition = borrowed_transitions(unborrowed.transition, unborrowed.text, len(base), Borrow(factor, k))
            fused = replace(served, transition=transition, ranker=rankers[share])

            def recommend(hs, start, part, fused=fused, beams=beams, impute=impute):
                scores = imputed(fused, hs, len(base), impute) if impute else None
                return fused.rank(hs, beams[part][start // 64], K, transition=scores)

            lists = lists_of(partial(recommend, part="cold"), ch)  # ranked once: for the ranks and the share below
            cold_ranks = ranks(lists, ct)
            warm_after = ranks(lists_of(partial(recommend, part="warm"), wh), wt)
            mixed_after = ranks(lists_of(partial(recommend, part="mixed"), mh), mt)
            out["variants"][variant_name(scheme, factor, k, impute, share)] = {
                "cold_served": cold_ranks, "warm_after": warm_after, "warm_before": warm_before[share],
                "mixed_after": mixed_after, "mixed_before": mixed_before[share],
                "lists_with_a_new_item": round(sum(any(i >= len(base) for i, _ in r) for r in lists)
                                               / max(1, len(lists)), 4)}  # fmt: skip
    out["cold_text"] = text_ranks
    out["random_new_item_hr@10"] = round(min(K, n_new) / n_new, 4)
    return out


def report(seeds: dict[int, dict], names: list[str]) -> dict:
    """Per variant: each seed's and the pooled rows' figures and intervals, the variant chosen on the first seed,
    and the other seeds' confirmation of it."""

    def figures(runs: list[dict], name: str) -> dict:
        cold_s = [x for r in runs for x in r["variants"][name]["cold_served"]]
        cold_t = [x for r in runs for x in r["cold_text"]]
        warm_a = [x for r in runs for x in r["variants"][name]["warm_after"]]
        warm_b = [x for r in runs for x in r["variants"][name]["warm_before"]]
        mixed_a = [x for r in runs for x in r["variants"][name].get("mixed_after", [])]
        mixed_b = [x for r in runs for x in r["variants"][name].get("mixed_before", [])]
        # Every scored row: before adding, a cold row's target is not in the catalog, so it is a miss.
        all_b, all_a = warm_b + mixed_b + [None] * len(cold_s), warm_a + mixed_a + cold_s
        return {"cold": {"served": summary(cold_s), "text": summary(cold_t),
                         "served_minus_text": interval(hits(cold_s), hits(cold_t))},
                "warm": {"before": summary(warm_b), "after": summary(warm_a),
                         "after_minus_before": interval(hits(warm_a), hits(warm_b))},
                "mixed": {"before": summary(mixed_b), "after": summary(mixed_a),
                          "after_minus_before": interval(hits(mixed_a), hits(mixed_b))},
                "all": {"before": summary(all_b), "after": summary(all_a),
                        "after_minus_before": interval(hits(all_a), hits(all_b))}}  # fmt: skip

    table = {name: {"per_seed": {s: figures([r], name) for s, r in seeds.items()},
                    "pooled": figures(list(seeds.values()), name)} for name in names}  # fmt: skip
    first = next(iter(seeds))
    on_first = {n: table[n]["per_seed"][first] for n in names}
    # The quality a storefront sees over old and new targets together; ties go to the new targets.
    chosen = max(names, key=lambda n: (on_first[n]["all"]["after"].get(f"hr@{K}", 0),
                                       on_first[n]["cold"]["served"].get(f"hr@{K}", 0)))  # fmt: skip
    rest = [r for s, r in seeds.items() if s != first]
    return {"variants": table, "chosen_on_seed": first, "chosen": chosen,
            "confirmation": figures(rest, chosen) if rest else None}  # fmt: skip


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
    parser.add_argument("--seeds", default="0", help="comma-separated; the first chooses the variant")
    parser.add_argument("--codes", default="used,unused", help="code schemes for the new items: used, unused")
    parser.add_argument("--factors", default="0,0.25,0.5,1", help="shares of the nearest item's transitions")
    parser.add_argument("--neighbours", default="1,3", help="how many nearest known items lend")
    parser.add_argument("--impute", default="0,0.25,0.5", help="a probe: an added item's missing transition score "
                        "as this share of its text score (0: none)")
    parser.add_argument("--new-shares", default="", help="comma-separated: serve learned rankers refitted with "
                        "these shares of items hidden as added (RankerConfig.new_share), each a variant; empty: "
                        "the checkpoint's own ranker")
    parser.add_argument("--pool-only", action="store_true", help="score nothing: pool the seeds' saved ranks "
                        "(--out/seed-N/ranks.json, e.g. from runs of a few seeds each, side by side)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # The machine is shared: RECAST_TORCH_THREADS bounds this run as it bounds `recast experiment`.
    torch.set_num_threads(int(os.environ.get("RECAST_TORCH_THREADS", "2")))
    seeds = [int(s) for s in args.seeds.split(",")]
    schemes = args.codes.split(",")
    factors = [float(f) for f in args.factors.split(",")]
    neighbours = [int(k) for k in args.neighbours.split(",")]
    imputes = [float(g) for g in args.impute.split(",")]
    shares = [float(x) for x in args.new_shares.split(",")] if args.new_shares else [None]
    if args.pool_only:
        runs = {seed: json.loads((args.out / f"seed-{seed}" / "ranks.json").read_text()) for seed in seeds}
    else:
        runs = {seed: run_seed(args, seed, schemes, factors, neighbours, imputes, shares) for seed in seeds}
    names = list(runs[seeds[0]]["variants"])
    result = {"args": {k: str(v) for k, v in vars(args).items()},
              "seeds": {s: {k: v for k, v in r.items() if k not in ("variants", "cold_text")}
                        for s, r in runs.items()},
              **report(runs, names)}  # fmt: skip
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    for name in names:
        log.info("%s", one_line(name, result["variants"][name]))
    log.info("chosen on seed %d: %s; confirmation (seeds %s): %s", seeds[0], result["chosen"], seeds[1:],
             json.dumps(result["confirmation"]))  # fmt: skip


def prepare(
    data: Path, out: Path, seed: int, preset_name: str, epochs: int | None, item_share: float = 0.1,
    user_share: float = 0.2, max_rows: int | None = None,
) -> tuple[set[str], set[str], dict, SFTConfig]:
    """The seed's split and base data set (``out/base``), and its policy trained on the base (``out/ckpt``, reused
    by a rerun): (held-out items, held-out users, what the base holds, the SFT config)."""
    from learner.sft_trainer import train_sft
    from recast.sft import preset

    held_items, held_users = split(data, item_share, user_share, seed)
    made = write_base(data, out / "base", held_items, held_users, max_rows)
    log.info("seed %d: held out %d items and %d users; base: %s", seed, len(held_items), len(held_users), made)
    config = replace(preset(preset_name), seed=seed, **({} if epochs is None else {"epochs": epochs}))
    if not (out / "ckpt" / "manifest.json").exists():
        train_sft(out / "base", out / "base" / "valid.csv", config, out / "ckpt", progress=False)
    return held_items, held_users, made, config


def refit_rankers(out: Path, config: SFTConfig, overrides: list[dict]) -> list:
    """The seed's learned ranker refitted on its base's rows as ``train_sft`` fits the checkpoint's own, once per
    ``overrides`` (``RankerConfig`` fields changed); the policy, taught by the checkpoint's own, is kept."""
    from learner.ranker_trainer import fit_served_ranker
    from learner.sft_trainer import ranker_config, scorer_source
    from recast.checkpoint import load_checkpoint
    from recast.dataset import load_catalog, load_interactions

    if not overrides:
        return []
    base = load_catalog(out / "base")
    rows, text = load_interactions(out / "base" / "valid.csv", base), load_checkpoint(out / "ckpt").text
    return [fit_served_ranker(rows, base.index, text, replace(ranker_config(config), **changed), scorer_source(config))
            for changed in overrides]  # fmt: skip


def run_seed(args, seed: int, schemes: list[str], factors: list[float], neighbours: list[int],
             imputes: list[float], shares: list[float | None]) -> dict:  # fmt: skip
    """One seed: its split and base data set, its trained policy (kept under ``--out/seed-N/ckpt`` and reused by
    a rerun), and its per-row ranks (``--out/seed-N/ranks.json``)."""
    out = args.out / f"seed-{seed}"
    held_items, held_users, made, config = prepare(args.data, out, seed, args.preset, args.epochs, args.item_share,
                                                   args.user_share, args.max_train_rows)  # fmt: skip
    ckpt = out / "ckpt"
    rankers: dict[float | None, object] = {None: None} if None in shares else {}
    refit = [s for s in shares if s is not None]
    rankers.update(zip(refit, refit_rankers(out, config, [{"new_share": s} for s in refit]), strict=True))
    figures = {"base": made, **evaluate(args.data, ckpt, held_items, held_users, args.beam_width, schemes, factors,
                                        neighbours, imputes, rankers)}  # fmt: skip
    (out / "ranks.json").write_text(json.dumps(figures))
    return figures


def one_line(name: str, figures: dict) -> str:
    def part(f: dict) -> str:
        c, w = f["cold"], f["warm"]
        return (f"cold {c['served'].get('hr@10')} vs text {c['text'].get('hr@10')} "
                f"{c['served_minus_text'].get('diff')} {c['served_minus_text'].get('ci95')}; warm "
                f"{w['before'].get('hr@10')} -> {w['after'].get('hr@10')} {w['after_minus_before'].get('diff')} "
                f"{w['after_minus_before'].get('ci95')}; mixed {f['mixed']['before'].get('hr@10')} -> "
                f"{f['mixed']['after'].get('hr@10')} {f['mixed']['after_minus_before'].get('ci95')}; "
                f"all {f['all']['before'].get('hr@10')} -> "
                f"{f['all']['after'].get('hr@10')} {f['all']['after_minus_before'].get('ci95')}")  # fmt: skip

    seeds = " | ".join(f"seed {s}: {part(f)}" for s, f in figures["per_seed"].items())
    return f"{name}: {seeds} | pooled: {part(figures['pooled'])}"

if __name__ == "__main__":
    main()
