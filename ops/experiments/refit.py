"""What tuning the served ranker on logged lists would buy (issue 15), measured on the cross-fitted tuning scope.

    python -m ops.experiments.refit --label default+anchors=5+teacher_history=10 --seeds 0,1

Why: the ranker is what the served list is (BENCHMARKS.md, twelfth round), and a refresh keeps the parent's
(``learner/refresh/learn.py``), so nothing learnt from the logged lists reaches it except through the counts. A
refresh could tune it (:func:`tune_ranker`) on the night's lists: each list's history and its
strongest positive, described by the parent's counts, which have never seen the night's shoppers.

The tuning scope holds exactly that situation. Fold k's rows are users that fold k's checkpoint never saw, described
by its counts (``ops.experiments.blend dump``). Each fold's users are split in two halves by a seeded hash; each
half is ranked by the saved ranker tuned on the other half's rows (the "logged lists"), so no row is ranked by a
ranker that saw it. The served blend (the policy's beam at the checkpoint's weight) is kept. Variants: tuning
settings, a night's worth of rows (``--night``, drawn from the half), and a ranker fitted on the half's rows alone
(how far the rows alone go). Each against the served ranking, paired over rows, intervals resampling users.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ops.experiments.blend import (
    _served_blend,
    _users,
    against_served,
    load_dumps,
    pooled,
    scope_arguments,
    served_ranks,
)
from ops.experiments.crossfit import FOLDS, METRICS
from ops.experiments.policy import Paths

if TYPE_CHECKING:
    import torch

    from recast.ranker import Ranker

# (epochs, lr, proximal): from the parent, the parent pulled back, a longer free run, a faster one.
SETTINGS = ((10, 0.003, 1.0), (10, 0.003, 0.0), (30, 0.003, 0.0), (10, 0.01, 0.0))


@dataclass(frozen=True)
class RankerTuning:
    """How a served ranker is tuned on logged lists (:func:`tune_ranker`): a few passes from its weights, pulled
    back towards them, because a night's logged lists are a few hundred rows against the thousands it was fitted
    on."""

    epochs: int = 10
    lr: float = 0.003
    # The pull back: ``proximal * ||theta - theta_parent||^2`` added to the loss. 0 lets the rows move it freely.
    proximal: float = 1.0
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1:
            raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got {self.epochs} and {self.batch_size}")
        if self.lr <= 0 or self.proximal < 0:
            raise ValueError(f"lr must be > 0 and proximal >= 0, got {self.lr} and {self.proximal}")


def tune_ranker(ranker: Ranker, features: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor,
                tuning: RankerTuning) -> Ranker:  # fmt: skip
    """``ranker`` trained further on rows given as :func:`recast.ranker.fit_ranker` takes them, with its loss.

    The normalisation (mean, std) and the features the parent gave no weight are kept as they were, so the tuned
    ranker reads candidates exactly as its parent does and differs only by what the rows taught. No rows, or no
    epochs, return the parent unchanged."""
    import torch

    from recast.ranker import Ranker

    if features.shape[0] == 0 or tuning.epochs == 0:
        return ranker
    width = ranker.w1.shape[1]
    z = ((features[..., :width] - ranker.mean) / ranker.std) * mask.unsqueeze(2)
    used = (ranker.w1 != 0).any(dim=0)  # a feature the parent never varied stays unread (fit_ranker)
    parent = [ranker.w1, ranker.b1, ranker.w2, ranker.b2]
    params = [p.detach().clone().requires_grad_(True) for p in parent]
    optimizer = torch.optim.Adam(params, lr=tuning.lr)
    generator = torch.Generator().manual_seed(tuning.seed)
    with torch.enable_grad():
        for _ in range(tuning.epochs):
            order = torch.randperm(z.shape[0], generator=generator)
            for start in range(0, z.shape[0], tuning.batch_size):
                picked = order[start : start + tuning.batch_size]
                w1, b1, w2, b2 = params
                hidden = torch.relu(z[picked] @ (w1 * used).T + b1)
                logits = (hidden @ w2 + b2).masked_fill(~mask[picked], float("-inf"))
                loss = torch.nn.functional.cross_entropy(logits, targets[picked])
                if tuning.proximal > 0:
                    loss = loss + tuning.proximal * sum(((p - q) ** 2).sum() for p, q in zip(params, parent))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    w1, b1, w2, b2 = (p.detach().clone() for p in params)
    return Ranker(ranker.mean, ranker.std, w1 * used, b1, w2, b2, ranker.per_scorer, ranker.policy_weight)


def halves(users: list[str], seed: int) -> list[int]:
    """0 or 1 per row, by a seeded hash of its user, so a user's rows stay together.

    >>> halves(["a", "b", "a"], 0)[0] == halves(["a", "b", "a"], 0)[2]
    True
    """
    from learner.ranker_trainer import user_fold

    return [user_fold(u, 2, 1_000 + seed) for u in users]


def training_rows(d: dict, rows: list[int]):
    """(features, mask, target column) of ``rows`` whose target is among their candidates (as ``fit_ranker`` wants)."""
    import torch

    index = torch.tensor(rows, dtype=torch.long)
    items, target = d["cand_items"][index], d["targets"][index].unsqueeze(1)
    hit = items == target
    found = hit.any(dim=1)
    return d["features"][index][found], (items >= 0)[found], hit[found].long().argmax(dim=1)


def refit_scores(dumps: dict, seeds: list[int], night: int, folds: int = FOLDS) -> dict[str, dict]:
    """Per variant, each row's scores pooled over seeds (``blend.pooled``); "served" is the saved ranker."""
    import torch
    from tqdm.auto import tqdm

    from recast.ranker import Ranker, RankerConfig, fit_ranker

    weight, temperature = _served_blend(dumps)
    names = ["served"] + [f"tuned e{e} lr{lr:g} prox{p:g}" for e, lr, p in SETTINGS]
    names += [f"tuned e{e} lr{lr:g} prox{p:g}, a night ({night} rows)" for e, lr, p in SETTINGS]
    names += ["fitted on the half's rows alone"]
    per_run: dict[str, dict] = {n: {} for n in names}
    for (fold, seed), d in tqdm(dumps.items(), desc="refit", unit="run"):
        saved = Ranker.from_tensors(d["ranker"])
        side = halves(d["users"], seed)
        ranks = {n: [None] * len(side) for n in names}
        for half in (0, 1):
            scored = [i for i, h in enumerate(side) if h == half]
            logged = [i for i, h in enumerate(side) if h != half]
            nightly = sorted(random.Random(seed * 100 + fold * 2 + half).sample(logged, min(night, len(logged))))
            on_half, on_night = training_rows(d, logged), training_rows(d, nightly)
            rankers = {"served": saved}
            for e, lr, p in SETTINGS:
                tuning, name = RankerTuning(epochs=e, lr=lr, proximal=p, seed=seed), f"tuned e{e} lr{lr:g} prox{p:g}"
                rankers[name] = tune_ranker(saved, *on_half, tuning)
                rankers[f"{name}, a night ({night} rows)"] = tune_ranker(saved, *on_night, tuning)
            config = RankerConfig(per_scorer=saved.per_scorer, policy_weight=saved.policy_weight, seed=seed)
            rankers["fitted on the half's rows alone"] = fit_ranker(*on_half, config)
            index = torch.tensor(scored, dtype=torch.long)
            part = {k: (v[index] if torch.is_tensor(v) and v.shape[:1] == d["targets"].shape else v)
                    for k, v in d.items()}  # fmt: skip
            for name, ranker in rankers.items():
                got = served_ranks(part, ranker, part["cand_items"], part["features"], weight, temperature)
                for i, r in zip(scored, got, strict=True):
                    ranks[name][i] = r
        for name in names:
            per_run[name][fold, seed] = ranks[name]
    return {name: pooled(runs, seeds, folds) for name, runs in per_run.items()}


def refit(paths: Paths, label: str, seeds: list[int], night: int, folds: int = FOLDS) -> list[dict]:
    dumps = load_dumps(paths, label, seeds, folds)
    return against_served(refit_scores(dumps, seeds, night, folds), _users(dumps, seeds, folds))


def main(argv: list[str] | None = None) -> None:
    from ops.experiments.blend import table

    parser = argparse.ArgumentParser(prog="python -m ops.experiments.refit", description=__doc__.split("\n\n")[0],
                                     epilog="Reads `blend dump`'s served.pt files; writes OUT/crossfit-tuning/LABEL/"
                                     "refit.json and prints its table.")  # fmt: skip
    scope_arguments(parser, threads=1)
    parser.add_argument("--label", default="default+anchors=5+teacher_history=10", help="the runs' recipe label")
    parser.add_argument("--night", type=int, default=130, help="rows in a night's logged lists (the demo's ~130)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    seeds = [int(s) for s in args.seeds.split(",")]
    result = refit(Paths(args.data, args.out), args.label, seeds, args.night, args.folds)
    where = args.out / "crossfit-tuning" / args.label / "refit.json"
    where.write_text(json.dumps(result, indent=1) + "\n")
    print(table([r for r in result if r["variant"] != "served"], "ranker"))
    served = result[0]
    print(f"\nserved: {' / '.join(f'{served[m]:.4f}' for m in METRICS)}; seeds {args.seeds}; tuning scope, users "
          f"resampled; written to {where}")  # fmt: skip


if __name__ == "__main__":
    main()
