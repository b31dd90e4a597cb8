"""How the policy enters the served list, and how much of a change of policy reaches it (issue 15), measured on the
cross-fitted tuning scope (``ops.experiments.crossfit --scope tuning``).

    python -m ops.experiments.blend dump --label default+anchors=5+teacher_history=10 --seeds 0,1
    python -m ops.experiments.blend sweep --label ... --seeds 0,1
    python -m ops.experiments.blend stack --label ... --seeds 0,1 [--fold 0]
    python -m ops.experiments.blend passthrough OTHER-LABEL --label ... --seeds 0,1
    python -m ops.experiments.blend frontier OTHER-LABEL... --label ... --seeds 0,1

Why: the served ranking is the learned ranker with the policy's beam blended in at ``policy_weight`` 0.2, and the
policy's share of it is inside the noise (BENCHMARKS.md, eleventh round). The ranker cannot read the policy as a
feature where it is trained, because the policy has seen every training row and its in-sample confidence misleads
(``recast.ranker``). On the tuning scope every fold's policy has never seen the fold's users, so its scores there
are what a served user's are: out of fold, by construction.

``dump`` decodes each finished tuning-scope run's rows once and saves what the served ranking reads: the policy's
beam (items, scores), the ranker's candidates and features (also with the beam's items added), the saved ranker
read once per anchor as the policy is decoded (``ops.experiments.teacher.anchored_ranker_scores``), the target.
``sweep`` re-blends them under other weights and temperatures without decoding again. ``stack`` ranks three
candidate sets (the scorers' own, with the beam added, the beam alone: the policy as the only candidate generator)
with the saved ranker and with rankers retrained with and without the policy's view of each candidate
(:data:`POLICY_FEATURES`), and the saved ranker read per anchor. Retrained rankers are cross-fitted: each fold's
rows are ranked by one trained on the other folds' rows, so no row is scored by a model that saw it. Both give each
variant against the served ranking as paired intervals resampling users. ``passthrough`` asks how much of a change
of policy reaches each of those served rankings: every variant under another recipe's runs (another policy, the
same folds and seeds) against itself under ``--label``'s, paired over the same rows. That is what learning can
move in each design. ``frontier`` does the same for the designs that give the policy more of the list (heavier
blends, interleaving, a product with the ranker), each also priced against the served ranking.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ops.experiments.crossfit import FOLDS, METRICS, fold_files, run_dir
from ops.experiments.policy import Paths

SCOPE = "tuning"  # choices are made here only: the held-out users are never read
DEPTH = 50


def dump(paths: Paths, label: str, seeds: list[int], beam_width: int, folds: int = FOLDS) -> None:
    """Write ``served.pt`` beside each finished run's ``result.json`` (module doc); existing dumps are kept."""
    import torch
    from tqdm.auto import tqdm

    from ops.experiments.teacher import anchored_ranker_scores
    from recast.checkpoint import load_checkpoint
    from recast.dataset import load_catalog, load_interactions
    from recast.ranker import candidates
    from recast.recommender import Recommender

    catalog = load_catalog(paths.data)
    jobs = [(k, s) for k in range(folds) for s in seeds]
    for fold, seed in tqdm(jobs, desc=f"dump {label}", unit="run"):
        out = run_dir(paths, label, fold, seed, SCOPE)
        if (out / "served.pt").is_file():
            continue
        if not (out / "result.json").is_file():
            raise SystemExit(f"{out}: not run (`crossfit --scope tuning run --only {fold} --seed {seed}`)")
        ckpt = load_checkpoint(out / "ckpt")
        rec = Recommender.from_checkpoint(ckpt, beam_width)
        rows = load_interactions(fold_files(paths, fold, SCOPE)[1], catalog)
        histories = [[catalog.index[i] for i in r.history] for r in rows]
        parts: dict[str, list] = {name: [] for name in ("beam_items", "beam_scores", "cand_items", "features",
                                                        "union_items", "union_features", "anchored_items",
                                                        "anchored_probs")}  # fmt: skip
        width = 3 * rec.ranker.per_scorer
        for start in range(0, len(rows), 64):
            hist = histories[start : start + 64]
            beams = rec.policy(hist)
            trans, text = rec.transition_scores(hist), rec.text_scores(hist)
            cut = [h[-rec.scorer_history :] for h in hist]
            cands = candidates(cut, rec.transition, rec.text, rec.ranker.per_scorer, trans, text)
            pad = width - cands.items.shape[1]
            parts["beam_items"].append(beams.items)
            parts["beam_scores"].append(beams.scores)
            parts["cand_items"].append(torch.nn.functional.pad(cands.items, (0, pad), value=-1))
            parts["features"].append(torch.nn.functional.pad(cands.features, (0, 0, 0, pad)))
            # The same candidates with the policy's beam added (recast.ranker.candidates' extra).
            union = candidates(cut, rec.transition, rec.text, rec.ranker.per_scorer, trans, text, beams.items)
            pad = width + beam_width - union.items.shape[1]
            parts["union_items"].append(torch.nn.functional.pad(union.items, (0, pad), value=-1))
            parts["union_features"].append(torch.nn.functional.pad(union.features, (0, 0, 0, pad)))
            # The ranker read once per anchor as the policy is decoded, its readings mixed at the anchors' weights
            # (the ninth round's "ranker read per anchor"): every item any reading lists, so the mix is exact.
            anchored = anchored_ranker_scores(ckpt, hist, rec.scorer_history, rec.anchors, rec.anchor_decay)
            probs, items = anchored.topk(min(rec.anchors * width, anchored.shape[1]), dim=1)
            parts["anchored_items"].append(torch.where(probs > 0, items, -1))
            parts["anchored_probs"].append(probs)
        dumped = {name: torch.cat(p) for name, p in parts.items()}
        dumped["targets"] = torch.tensor([catalog.index[r.target] for r in rows])
        dumped["ranker"] = ckpt.ranker.to_tensors()
        dumped["users"] = [r.user_id for r in rows]
        dumped["temperature"] = rec.fusion.temperature
        torch.save(dumped, out / "served.pt")


def load_dumps(paths: Paths, label: str, seeds: list[int], folds: int = FOLDS) -> dict[tuple[int, int], dict]:
    import torch

    out = {}
    for fold in range(folds):
        for seed in seeds:
            path = run_dir(paths, label, fold, seed, SCOPE) / "served.pt"
            if not path.is_file():
                raise SystemExit(f"{path}: not dumped (`blend dump --label {label} --seeds {seed}`)")
            out[fold, seed] = torch.load(path, weights_only=False)
    return out


def served_ranks(d: dict, ranker, items, features, policy_weight: float, temperature: float) -> list:
    """The target's rank per row when ``ranker`` ranks each row's candidates ``items`` (-1: none) described by
    ``features``, as served (``Ranker.probabilities``), and the policy's beam is blended in at ``policy_weight``."""
    from recast.ranker import Candidates

    return _blended_ranks(d, ranker.probabilities(Candidates(items, features), _num_items(d, items)), policy_weight,
                          temperature)  # fmt: skip


def anchored_ranks(d: dict, policy_weight: float, temperature: float) -> list:
    """:func:`served_ranks` with the dump's ranker read per anchor (its mixed probabilities) in place of one reading."""
    import torch

    items = d["anchored_items"]
    ranked = torch.zeros(len(d["targets"]), _num_items(d, items)).scatter_add(
        1, items.clamp(min=0), torch.where(items >= 0, d["anchored_probs"], 0.0)
    )
    return _blended_ranks(d, ranked, policy_weight, temperature)


def _num_items(d: dict, items) -> int:
    """Positions enough for every item the dump and ``items`` name (the catalog's size is not stored)."""
    return int(max(items.max(), d["beam_items"].max(), d["targets"].max())) + 1


def _blended_ranks(d: dict, ranked, policy_weight: float, temperature: float) -> list:
    """The target's rank per row under ``(1 - w) * ranked + w * softmax(beam / T)`` (recast.fusion.fuse_ranked)."""
    from recast.fusion import fuse_ranked
    from recast.metrics import rank_of

    lists = fuse_ranked(d["beam_items"], d["beam_scores"], ranked, DEPTH, policy_weight, temperature)
    return [rank_of(int(t), [i for i, _ in row]) for t, row in zip(d["targets"], lists, strict=True)]


def _served_blend(dumps: dict) -> tuple[float, float]:
    """The served (policy weight, temperature) of the runs (the weight is stored as float32)."""
    first = next(iter(dumps.values()))
    return round(float(first["ranker"]["policy_weight"]), 6), first["temperature"]


def pooled(per_run: dict[tuple[int, int], list], seeds: list[int], folds: int = FOLDS) -> dict[str, list[float]]:
    """Per metric, each row's score pooled over seeds, folds joined in order."""
    from recast.metrics import pooled_entry_scores

    return {m: [x for k in range(folds) for x in pooled_entry_scores([per_run[k, s] for s in seeds], m)]
            for m in METRICS}  # fmt: skip


def compare(base: dict[str, list[float]], other: dict[str, list[float]], users: list[str]) -> dict:
    from recast.metrics import clustered_bootstrap

    return {m: clustered_bootstrap([b - a for a, b in zip(base[m], other[m], strict=True)], users) for m in METRICS}


def against_served(scores: dict[str, dict[str, list[float]]], users: list[str], served: str = "served") -> list[dict]:
    """Per variant of ``scores`` (per metric, each row's score), its means and, but for ``served`` itself, its paired
    intervals against ``served``, resampling ``users``."""
    return [{"variant": name, **{m: sum(s[m]) / len(s[m]) for m in METRICS},
             **({} if name == served else {"against_served": compare(scores[served], s, users)})}
            for name, s in scores.items()]  # fmt: skip


def scope_arguments(parser: argparse.ArgumentParser, threads: int) -> None:
    """The options every reader of the tuning scope's runs takes: where they are, which, and the torch threads."""
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"), help="data set directory")
    parser.add_argument("--out", type=Path, default=Path("runs/policy"), help="where `policy prepare` wrote its splits")
    parser.add_argument("--threads", type=int, default=threads, help="torch intra-op threads")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    parser.add_argument("--folds", type=int, default=FOLDS, help="folds in all, fold 0 included, as `crossfit` made")


def _users(dumps: dict, seeds: list[int], folds: int = FOLDS) -> list[str]:
    return [u for k in range(folds) for u in dumps[k, seeds[0]]["users"]]


def sweep(paths: Paths, label: str, seeds: list[int], weights: list[float], temperatures: list[float],
          folds: int = FOLDS) -> list[dict]:  # fmt: skip
    """Every (policy weight, temperature) against the served one: means and paired intervals (variant − served)."""
    from recast.ranker import Ranker

    dumps = load_dumps(paths, label, seeds, folds)
    saved = {key: Ranker.from_tensors(d["ranker"]) for key, d in dumps.items()}
    served_w, served_t = _served_blend(dumps)
    users = _users(dumps, seeds, folds)

    def scores(w: float, t: float) -> dict[str, list[float]]:
        return pooled({key: served_ranks(d, saved[key], d["cand_items"], d["features"], w, t)
                       for key, d in dumps.items()}, seeds, folds)  # fmt: skip

    base = scores(served_w, served_t)
    out = []
    for w in weights:
        for t in temperatures:
            s = base if (w, t) == (served_w, served_t) else scores(w, t)
            out.append({"policy_weight": w, "temperature": t, **{m: sum(s[m]) / len(s[m]) for m in METRICS},
                        "against_served": compare(base, s, users)})  # fmt: skip
    return out


# What ``stack`` adds to describe a candidate by the policy's view of it, after recast.ranker.FEATURES.
POLICY_FEATURES = (
    "in the policy's beam",
    "log(1 + rank) in the beam (the beam's width where absent)",
    "beam score minus the row's best (-30 where absent)",
    "the policy's probability (softmax of the beam at the served temperature; 0 where absent)",
)
CANDIDATE_SETS = ("scorers", "union", "beam")  # the ranker's own; with the beam added; the beam's alone


def policy_features(items, beam_items, beam_scores, temperature: float):
    """(B, C, len(POLICY_FEATURES)) for candidates ``items`` (B, C) given the policy's beam, and (B, C) whether each
    candidate is in it.

    >>> import torch
    >>> beam_items, beam_scores = torch.tensor([[7, 5]]), torch.tensor([[-1.0, -3.0]])
    >>> f, inside = policy_features(torch.tensor([[5, 7, -1]]), beam_items, beam_scores, 1.0)
    >>> inside.tolist()  # -1 is padding, never in the beam
    [[True, True, False]]
    >>> [round(x, 4) for x in f[0, 0].tolist()]  # item 5: second in the beam, 2 below the best
    [1.0, 0.6931, -2.0, 0.1192]
    """
    import torch

    from recast.fusion import beam_distribution

    valid = beam_items >= 0
    match = (items.unsqueeze(2) == beam_items.unsqueeze(1)) & valid.unsqueeze(1) & (items >= 0).unsqueeze(2)
    inside = match.any(dim=2)
    width = float(beam_items.shape[1])
    rank = torch.where(inside, match.float().argmax(dim=2).float(), width)
    scores = torch.where(valid, beam_scores, 0.0)
    gap = torch.where(inside, (scores.unsqueeze(1) * match).sum(dim=2) - scores[:, :1], -30.0).clamp(min=-30.0)
    prob = (beam_distribution(beam_items, beam_scores, temperature).unsqueeze(1) * match).sum(dim=2)
    return torch.stack([inside.float(), torch.log1p(rank), gap, prob], dim=2), inside


def _candidate_set(d: dict, which: str, temperature: float):
    """(items, ranker features, policy features) of one dump under a candidate set (CANDIDATE_SETS)."""
    import torch

    if which == "scorers":
        items, features = d["cand_items"], d["features"]
    else:
        items, features = d["union_items"], d["union_features"]
    extra, inside = policy_features(items, d["beam_items"], d["beam_scores"], temperature)
    if which == "beam":
        items = torch.where(inside, items, -1)
    return items, features, extra


def stack(paths: Paths, label: str, seeds: list[int], weights: list[float], folds: int = FOLDS,
          only: int | None = None) -> list[dict]:  # fmt: skip
    """Per candidate set, the saved ranker and a ranker retrained with and without the policy's features, each
    blended at ``weights``, against the served ranking (module doc), and what the policy's features add. ``only``:
    report fold ``only``'s rows alone (the retrained rankers are cross-fitted over every fold all the same)."""
    dumps = load_dumps(paths, label, seeds, folds)
    scores = stack_scores(dumps, seeds, weights, folds)
    users = _users(dumps, seeds, folds)
    if only is not None:
        start = sum(len(dumps[k, seeds[0]]["users"]) for k in range(only))
        kept = slice(start, start + len(dumps[only, seeds[0]]["users"]))
        scores = {name: {m: s[m][kept] for m in METRICS} for name, s in scores.items()}
        users = users[kept]
    base = scores.pop("served")
    out = []
    for name, s in scores.items():
        means = {m: sum(s[m]) / len(s[m]) for m in METRICS}
        entry = {"variant": name, **means, "against_served": compare(base, s, users)}
        without = name.replace(" with the policy's features", "")
        if without != name:  # what the policy's features add to the same ranker, trained the same way
            entry["against_without_policy"] = compare(scores[without], s, users)
        once = name.replace("the saved ranker read per anchor", "saved ranker")
        if once != name:  # what reading the same ranker per anchor adds to reading it once
            entry["against_one_reading"] = compare(scores[once], s, users)
        out.append(entry)
    return out


def passthrough(paths: Paths, label: str, other: str, seeds: list[int], weights: list[float],
                folds: int = FOLDS) -> list[dict]:  # fmt: skip
    """How much of a change of policy reaches each served ranking: every variant of ``stack`` (and the policy
    alone) under ``other``'s runs against the same variant under ``label``'s, paired over the same rows. The two
    labels are two policies trained on the same folds and seeds."""
    dumps = load_dumps(paths, label, seeds, folds)
    theirs = load_dumps(paths, other, seeds, folds)
    users = _users(dumps, seeds, folds)
    if users != _users(theirs, seeds, folds):
        raise SystemExit(f"{label} and {other} were scored on different rows")
    ours, changed = stack_scores(dumps, seeds, weights, folds), stack_scores(theirs, seeds, weights, folds)
    return [{"variant": name, **{m: sum(changed[name][m]) / len(users) for m in METRICS},
             "against_served": compare(ours[name], changed[name], users)} for name in ours]  # fmt: skip


# Served designs that give the policy more of the list than today's blend (``frontier``): the blend at these
# weights (and the served one); interleaving, the ranker's and the policy's lists taking slots in turn by a
# pattern (r: the ranker's next item, p: the policy's; an item already listed is skipped); and the product of the
# two, the ranker's probability times the policy's beam probability to a power (an item outside the beam scores
# as the beam's last, less one).
FRONTIER_WEIGHTS = (0.2, 0.4, 0.6, 0.8)
INTERLEAVINGS = ("rrp", "rp", "rpp", "pr")
PRODUCT_POWERS = (0.25, 0.5, 1.0)


def interleave(policy: list[int], ranker: list[int], pattern: str, depth: int = DEPTH) -> list[int]:
    """The two lists merged slot by slot as ``pattern`` (repeated) says; a list that runs out leaves its slots to
    the other.

    >>> interleave([7, 1, 8], [1, 2, 3], "rp")
    [1, 7, 2, 8, 3]
    """
    out: list[int] = []
    sources = {"p": iter(policy), "r": iter(ranker)}
    slot = 0
    while len(out) < depth and sources:
        which = pattern[slot % len(pattern)]
        slot += 1
        if which not in sources:
            which = next(iter(sources))
        item = next((i for i in sources[which] if i not in out), None)
        if item is None:
            del sources[which]
        else:
            out.append(item)
    return out


def frontier_ranks(d: dict, weights: list[float]) -> dict[str, list]:
    """The target's rank per row under the blend at each of ``weights``, each of :data:`INTERLEAVINGS` and
    :data:`PRODUCT_POWERS`, with the dump's saved ranker, and under the policy alone."""
    import torch

    from recast.metrics import rank_of
    from recast.ranker import Candidates, Ranker

    ranker = Ranker.from_tensors(d["ranker"])
    temperature = d["temperature"]
    out = {f"blend, w={w:g}": served_ranks(d, ranker, d["cand_items"], d["features"], w, temperature)
           for w in weights}  # fmt: skip
    n = _num_items(d, d["cand_items"])
    probs = ranker.probabilities(Candidates(d["cand_items"], d["features"]), n)
    top = probs.topk(min(DEPTH, n), dim=1)
    ranked = [[int(i) for i, p in zip(items, ps) if p > 0] for items, ps in zip(top.indices, top.values)]
    beams = [[int(i) for i in row if i >= 0] for row in d["beam_items"]]
    targets = [int(t) for t in d["targets"]]
    for pattern in INTERLEAVINGS:
        out[f"interleaved, {pattern}"] = [rank_of(t, interleave(b, r, pattern))
                                          for t, b, r in zip(targets, beams, ranked)]  # fmt: skip
    valid = d["beam_items"] >= 0
    last = torch.where(valid, d["beam_scores"], float("inf")).amin(dim=1, keepdim=True)
    policy = (last - 1.0).expand(-1, n).clone()
    policy.scatter_(1, d["beam_items"].clamp(min=0), torch.where(valid, d["beam_scores"], last - 1.0))
    for power in PRODUCT_POWERS:
        best = (torch.log(probs + 1e-4) + power * policy).topk(DEPTH, dim=1).indices
        out[f"product, power {power:g}"] = [rank_of(t, row.tolist()) for t, row in zip(targets, best)]
    out["policy alone"] = [rank_of(t, b[:DEPTH]) for t, b in zip(targets, beams)]
    return out


def frontier(paths: Paths, label: str, others: list[str], seeds: list[int], folds: int = FOLDS) -> list[dict]:
    """Per design, what it costs against the served ranking under ``label``'s runs, and how much of each change of
    policy (``others``: other recipes on the same folds and seeds) reaches it."""
    runs = {}
    for name in [label, *others]:
        dumps = load_dumps(paths, name, seeds, folds)
        if name == label:  # first: the served blend's weight is one of the designs
            served_w = _served_blend(dumps)[0]
            weights = sorted({served_w, *FRONTIER_WEIGHTS})
        per_run: dict[str, dict] = {}
        for key, d in dumps.items():
            for design, ranks in frontier_ranks(d, weights).items():
                per_run.setdefault(design, {})[key] = ranks
        runs[name] = ({design: pooled(r, seeds, folds) for design, r in per_run.items()}, _users(dumps, seeds, folds))
    ours, users = runs[label]
    if any(runs[o][1] != users for o in others):
        raise SystemExit(f"{label} and {others} were scored on different rows")
    return [{"variant": design, **{m: sum(s[m]) / len(s[m]) for m in METRICS},
             "against_served": compare(ours[f"blend, w={served_w:g}"], s, users),
             "changes": {o: compare(s, runs[o][0][design], users) for o in others}}
            for design, s in ours.items()]  # fmt: skip


def stack_scores(dumps: dict, seeds: list[int], weights: list[float], folds: int = FOLDS) -> dict[str, dict]:
    """Per variant (the served ranking, the policy alone, and per candidate set the saved ranker and rankers
    retrained with and without the policy's features, each blended at ``weights``), each row's scores pooled over
    seeds. Retrained rankers are cross-fitted: fold k's rows are ranked by one trained on the other folds' rows of
    the same seed, with the saved ranker's number of candidates."""
    import torch
    from tqdm.auto import tqdm

    from recast.metrics import rank_of
    from recast.ranker import Ranker, RankerConfig, fit_ranker

    served_w, temperature = _served_blend(dumps)
    saved = {key: Ranker.from_tensors(d["ranker"]) for key, d in dumps.items()}
    runs: dict[str, dict] = {}

    def add(name: str, key: tuple[int, int], ranker, items, features) -> None:
        for w in weights:
            runs.setdefault(f"{name}, w={w:g}", {})[key] = served_ranks(dumps[key], ranker, items, features, w,
                                                                         temperature)  # fmt: skip

    runs["served"] = {key: served_ranks(d, saved[key], d["cand_items"], d["features"], served_w, temperature)
                      for key, d in dumps.items()}  # fmt: skip
    runs["policy alone"] = {key: [rank_of(int(t), [i for i in beam.tolist() if i >= 0][:DEPTH])
                                  for t, beam in zip(d["targets"], d["beam_items"], strict=True)]
                            for key, d in dumps.items()}  # fmt: skip
    for w in weights:
        runs[f"scorers, the saved ranker read per anchor, w={w:g}"] = {
            key: anchored_ranks(d, w, temperature) for key, d in dumps.items()
        }
    sets = {(key, which): _candidate_set(d, which, temperature) for key, d in dumps.items() for which in CANDIDATE_SETS}
    jobs = [(which, policy) for which in CANDIDATE_SETS for policy in (False, True)]
    for which in CANDIDATE_SETS:
        for key in dumps:
            items, features, _ = sets[key, which]
            add(f"{which}, saved ranker", key, saved[key], items, features)
    for which, policy in tqdm(jobs, desc="cross-fitted rankers", unit="variant"):
        name = f"{which}, retrained" + (" with the policy's features" if policy else "")
        for seed in seeds:
            described = {}
            for fold in range(folds):
                items, features, extra = sets[(fold, seed), which]
                described[fold] = (items, torch.cat([features, extra], dim=2) if policy else features)
            for fold in range(folds):
                x, m, t = [], [], []
                for other in range(folds):
                    if other == fold:
                        continue
                    items, features = described[other]
                    hit = items == dumps[other, seed]["targets"].unsqueeze(1)
                    found = hit.any(dim=1)
                    x.append(features[found])
                    m.append((items >= 0)[found])
                    t.append(hit[found].long().argmax(dim=1))
                config = RankerConfig(per_scorer=saved[fold, seed].per_scorer, seed=seed)
                ranker = fit_ranker(torch.cat(x), torch.cat(m), torch.cat(t), config)
                items, features = described[fold]
                add(name, (fold, seed), ranker, items, features)
    return {name: pooled(per_run, seeds, folds) for name, per_run in runs.items()}


def table(result: list[dict], first: str, against: str = "− served") -> str:
    lines = [f"| {first} | HR@1 | HR@10 | NDCG@10 | {against}: ΔHR@1 | ΔHR@10 | ΔNDCG@10 |", "| --- |" + " --- |" * 6]
    for e in result:
        name = e.get("variant") or f"w={e['policy_weight']:g}, T={e['temperature']:g}"
        means = " | ".join(f"{e[m]:.4f}" for m in METRICS)
        lines.append(f"| {name} | {means} | {_intervals(e['against_served'])} |")
    added = [e for e in result if "against_without_policy" in e]
    if added:
        lines += ["", "| what the policy's features add | ΔHR@1 | ΔHR@10 | ΔNDCG@10 |", "| --- | --- | --- | --- |"]
        for e in added:
            lines.append(f"| {e['variant']} | {_intervals(e['against_without_policy'])} |")
    anchored = [e for e in result if "against_one_reading" in e]
    if anchored:
        lines += ["", "| what reading per anchor adds | ΔHR@1 | ΔHR@10 | ΔNDCG@10 |", "| --- | --- | --- | --- |"]
        for e in anchored:
            lines.append(f"| {e['variant']} | {_intervals(e['against_one_reading'])} |")
    return "\n".join(lines)


def frontier_table(result: list[dict]) -> str:
    """Each design's HR@10 / NDCG@10 and their change against served, then under each other policy."""
    others = list(result[0]["changes"])
    head = "| design | HR@10 / NDCG@10 | − served: ΔHR@10 | ΔNDCG@10 |" + "".join(
        f" under {o}: ΔHR@10 | ΔNDCG@10 |" for o in others)  # fmt: skip
    lines = [head, "| --- |" + " --- |" * (3 + 2 * len(others))]
    for e in result:
        cells = [e["against_served"]] + [e["changes"][o] for o in others]
        lines.append(f"| {e['variant']} | {e['HR@10']:.4f} / {e['NDCG@10']:.4f} | "
                     + " | ".join(_interval(c[m]) for c in cells for m in ("HR@10", "NDCG@10")) + " |")  # fmt: skip
    return "\n".join(lines)


def _interval(d) -> str:
    return f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]"


def _intervals(deltas: dict) -> str:
    return " | ".join(_interval(deltas[m]) for m in METRICS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ops.experiments.blend",
        description=__doc__.split("\n\n")[0],
        epilog="Dumps live beside each run (OUT/crossfit-tuning/LABEL/fold<k>/seed<s>/served.pt); sweep, stack and "
        "passthrough print a table and write it as JSON to OUT/crossfit-tuning/LABEL/.",
    )
    scope_arguments(parser, threads=2)
    parser.add_argument("--beams", type=int, default=50, help="beam width, as the runs were scored")
    parser.add_argument("--label", default="default+anchors=5+teacher_history=10", help="the runs' recipe label")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("dump", help="decode each tuning-scope run's rows once and save the served ranking's inputs")
    p = sub.add_parser("sweep", help="the blend's policy weight and temperature over a grid, against the served one")
    p.add_argument("--weights", default="0,0.1,0.2,0.3,0.4,0.5,0.6")
    p.add_argument("--temperatures", default="0.5,1,2,4")
    p = sub.add_parser("stack", help="rankers that also read the policy (its beam as candidates, its scores as "
                       "features), cross-fitted over the folds, against the served one")  # fmt: skip
    p.add_argument("--weights", default="0,0.2", help="the policy's share blended after each ranker")
    p.add_argument("--fold", type=int, default=None, help="report this fold's rows alone (0: the tuning users)")
    p = sub.add_parser("passthrough", help="how much of a change of policy reaches each served ranking: each "
                       "`stack` variant under another recipe's runs against the same variant under --label's")
    p.add_argument("other", help="the other recipe's label, trained on the same folds and seeds")
    p.add_argument("--weights", default="0,0.2", help="the policy's share blended after each ranker")
    p = sub.add_parser("frontier", help="designs that give the policy more of the served list (heavier blends, "
                       "interleaving, a product): what each costs, and how much of each change of policy reaches it")
    p.add_argument("others", nargs="+", help="other recipes' labels, trained on the same folds and seeds")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    paths = Paths(args.data, args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.command == "dump":
        dump(paths, args.label, seeds, args.beams, args.folds)
    elif args.command == "sweep":
        weights = [float(w) for w in args.weights.split(",")]
        temps = [float(t) for t in args.temperatures.split(",")]
        result = sweep(paths, args.label, seeds, weights, temps, args.folds)
    elif args.command == "stack":
        result = stack(paths, args.label, seeds, [float(w) for w in args.weights.split(",")], args.folds, args.fold)
    elif args.command == "frontier":
        result = frontier(paths, args.label, args.others, seeds, args.folds)
    else:
        weights = [float(w) for w in args.weights.split(",")]
        result = passthrough(paths, args.label, args.other, seeds, weights, args.folds)
    if args.command == "frontier":
        where = args.out / "crossfit-tuning" / args.label / "frontier.json"
        where.write_text(json.dumps(result, indent=1) + "\n")
        print(frontier_table(result))
        print(f"\nseeds {args.seeds}; tuning scope, users resampled; written to {where}")
    elif args.command != "dump":
        if args.command == "passthrough":
            name, first, against = f"passthrough-{args.other}", f"under {args.other}", f"− under {args.label}"
        else:
            name = args.command if getattr(args, "fold", None) is None else f"{args.command}-fold{args.fold}"
            against = "− served"
            first = "policy weight, temperature" if args.command == "sweep" else "ranker"
        where = args.out / "crossfit-tuning" / args.label / f"{name}.json"
        where.write_text(json.dumps(result, indent=1) + "\n")
        print(table(result, first, against))
        print(f"\nseeds {args.seeds}; tuning scope, users resampled; written to {where}")


if __name__ == "__main__":
    main()
