"""A residual policy served as a product with the ranker (issue 15), measured on the cross-fitted tuning scope.

    python -m ops.experiments.residual score --label LABEL [--beta 1] [--seeds 0,1]

Why: the served list is the learned ranker with the policy's beam blended in, and a change of policy barely reaches
it (BENCHMARKS.md, twelfth round): the policy is distilled from the ranker, so it is a weaker copy of what it is
blended with. A residual policy (``SFTConfig.residual``) is fitted as a product with the ranker read out of fold,
``p(token) ∝ policy(token) · ranker(token) ** residual`` along each SID path, so it learns what the ranker misses;
served the same way, every change of the policy moves the served scores.

``score`` ranks each tuning-scope row's ranker candidates (the ranker's own top 50 by each scorer, as served) by
that product, exactly as trained: per SID token, the policy's logits plus ``beta * log(teacher + floor)``, the
teacher being the ranker's probabilities over the row's candidates, cut to the recipe's ``teacher_top_k``. A
request's anchors (one prompt per recent item, ``recast.anchors``) each give the candidate a probability; they are
mixed at the anchors' weights. Against the served ranking of ``--against`` (its ``blend dump``: the same folds,
seeds, ranker and counts), paired over rows, intervals resampling users.
"""

from __future__ import annotations

import argparse
import json
import logging

from ops.experiments import blend
from ops.experiments.crossfit import FOLDS, fold_files, run_dir
from ops.experiments.policy import Paths

CHUNK = 8  # rows scored at once: each is (anchors x candidates) sequences


def item_trie(ckpt):
    """``ckpt``'s item trie and every item's path in it, what :func:`product_scores` reads (built once a run)."""
    from recast.sft import item_paths
    from recast.trie import ItemTrie

    trie = ItemTrie.build(ckpt.codes, len(ckpt.tokenizer))
    return trie, item_paths(trie, ckpt.codes)


def product_scores(ckpt, histories: list[list[int]], cand_items, ranker_probs, beta: float, floor: float, top_k: int,
                   sharpness: float, trie=None):  # fmt: skip
    """(B, C) log-probabilities of each row's candidates (-inf on padding) under the policy times the ranker
    (module doc). ``ranker_probs`` (B, N): the ranker's probabilities for the rows; ``trie``: ``item_trie(ckpt)``
    where the caller has it."""
    import torch

    from recast.anchors import anchor_histories
    from recast.beam import constrained_log_softmax
    from recast.distill import soft_targets, top_k_distribution

    codes, tokenizer, model = ckpt.codes, ckpt.tokenizer, ckpt.model.eval()
    trie, paths = trie or item_trie(ckpt)
    B, C = cand_items.shape
    L, V = codes.shape[1], len(tokenizer)
    items = cand_items.clamp(min=0)
    # The teacher's conditionals along each candidate's path, as the residual loss added them (recast.distill).
    t_items, t_probs = top_k_distribution(ranker_probs, top_k, sharpness)
    teacher = soft_targets(codes[items.reshape(-1)], codes[t_items].repeat_interleave(C, dim=0),
                           t_probs.repeat_interleave(C, dim=0), torch.ones(B * C), V)  # fmt: skip
    prior = (beta * torch.log(teacher + floor)).view(B, C, L, V)
    allowed = trie.expand(paths[items.reshape(-1)].reshape(-1))[0].view(B, C, L, V)
    anchors, decay = ckpt.anchors()
    prefixes, layout = anchor_histories(histories, anchors, decay)
    prompt_len = ckpt.prompt_history()
    mixed = torch.zeros(B, C)
    with torch.no_grad():
        for p, prefix in enumerate(prefixes):
            row = int(layout.rows[p])
            prompt = torch.tensor(tokenizer.encode_history(codes, prefix[-prompt_len:]))
            idx = torch.cat([prompt.expand(C, -1), codes[items[row], :-1]], dim=1)
            logits = model(idx)[:, len(prompt) - 1 :]  # (C, L, V): each SID token of each candidate
            logp = constrained_log_softmax(logits + prior[row], allowed[row])
            path = logp.gather(2, codes[items[row]].unsqueeze(2)).squeeze(2).sum(dim=1)
            mixed[row] += layout.weights[p] * path.exp()
    return torch.where(cand_items >= 0, mixed.clamp(min=1e-30).log(), float("-inf"))


def score(paths: Paths, label: str, against: str, seeds: list[int], beta: float | None, folds: int = FOLDS
          ) -> list[dict]:  # fmt: skip
    import torch
    from tqdm.auto import tqdm

    from recast.checkpoint import load_checkpoint
    from recast.dataset import load_catalog, load_interactions
    from recast.metrics import rank_of
    from recast.ranker import Candidates, Ranker

    catalog = load_catalog(paths.data)
    dumps = blend.load_dumps(paths, against, seeds, folds)
    weight, temperature = blend._served_blend(dumps)
    runs: dict[str, dict] = {"served": {}, "product": {}, "ranker alone": {}}
    for (fold, seed), d in tqdm(dumps.items(), desc=f"score {label}", unit="run"):
        ckpt = load_checkpoint(run_dir(paths, label, fold, seed, blend.SCOPE) / "ckpt")
        saved = Ranker.from_tensors(d["ranker"])
        if not torch.equal(ckpt.ranker.w1, saved.w1):
            raise SystemExit(f"fold {fold} seed {seed}: {label}'s ranker is not {against}'s; train both alike")
        config = ckpt.manifest["sft_config"]
        b = config.get("residual", 0.0) if beta is None else beta
        rows = load_interactions(fold_files(paths, fold, blend.SCOPE)[1], catalog)
        histories = [[catalog.index[i] for i in r.history] for r in rows]
        ranks, trie = [], item_trie(ckpt)
        for start in range(0, len(rows), CHUNK):
            part = slice(start, start + CHUNK)
            cands = Candidates(d["cand_items"][part], d["features"][part])
            probs = saved.probabilities(cands, len(catalog))
            got = product_scores(ckpt, histories[part], cands.items, probs, b, config.get("residual_floor", 1e-3),
                                 config["teacher_top_k"], config["teacher_sharpness"], trie)  # fmt: skip
            order = got.argsort(dim=1, descending=True, stable=True)
            for t, row_items, row_scores in zip(d["targets"][part], cands.items.gather(1, order),
                                                got.gather(1, order), strict=True):  # fmt: skip
                ranks.append(rank_of(int(t), [int(i) for i, s in zip(row_items, row_scores) if s > float("-inf")]))
        runs["product"][fold, seed] = ranks
        for name, w in (("served", weight), ("ranker alone", 0.0)):
            runs[name][fold, seed] = blend.served_ranks(d, saved, d["cand_items"], d["features"], w, temperature)
    scores = {name: blend.pooled(r, seeds, folds) for name, r in runs.items()}
    return blend.against_served(scores, blend._users(dumps, seeds, folds))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.experiments.residual", description=__doc__.split("\n\n")[0],
                                     epilog="Writes OUT/crossfit-tuning/LABEL/residual[-beta<b>].json and prints its "
                                     "table.")  # fmt: skip
    blend.scope_arguments(parser, threads=1)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="rank the tuning-scope rows by the policy times the ranker, against served")
    p.add_argument("--label", required=True, help="the residual recipe's runs")
    p.add_argument("--against", default="default+anchors=5+teacher_history=10", help="the served recipe's dumps")
    p.add_argument("--beta", type=float, default=None, help="the ranker's power when served (default: as trained)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    seeds = [int(s) for s in args.seeds.split(",")]
    result = score(Paths(args.data, args.out), args.label, args.against, seeds, args.beta, args.folds)
    name = "residual" if args.beta is None else f"residual-beta{args.beta:g}"
    where = args.out / "crossfit-tuning" / args.label / f"{name}.json"
    where.write_text(json.dumps(result, indent=1) + "\n")
    print(blend.table([r for r in result if r["variant"] != "served"], "ranking"))
    print(f"\nseeds {args.seeds}; tuning scope, users resampled; written to {where}")


if __name__ == "__main__":
    main()
