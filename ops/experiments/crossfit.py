"""Cross-fitted quality (issue 15): users scored once each, by models that never trained on them.

    python -m ops.experiments.crossfit prepare                            # runs/policy/crossfit/fold<k>/*.csv
    python -m ops.experiments.crossfit run --preset default --only 1,2,3 --seed 0
    python -m ops.experiments.crossfit report default:policy long-context:served --seeds 0
    python -m ops.experiments.crossfit --scope tuning run --preset default --set distill_weight=0.9

Why: the held-out users hold 655 rows and the tuning users 580, so a paired HR@10 difference on either is known to
about ±0.016, and a gap of 0.005 can be neither claimed nor ruled out; picking the best of several variants on 580
rows also inflates the winner's lead. Cross-fitting scores six times the users with the same recipes.

``--scope held-out`` (the default) measures fixed recipes. Fold 0 is the held-out users themselves (``policy
prepare``'s ``split/heldout.csv``; its runs are ``policy confirm``'s, reused as they are). Folds 1 .. K-1 deal the
inner fit users (``inner/fit.csv``) in a seeded order. The tuning users (``inner/tune.csv``), on whom every choice
of recipe was made, are never scored: they are in every fold's training rows. Each fold trains on every user but
its own, as ``confirm`` does, so every fold trains on about as many rows. Nothing here chooses anything.

``--scope tuning`` is for choosing. The held-out users are never read: fold 0 is the tuning users trained on the
fit users (as ``policy tune``), and folds 1 .. K-1 score the same fit-user folds trained on ``split/train.csv``
without them. Once recipes are chosen on it, folds 1 .. K-1 are tuning rows, and only fold 0 of the held-out
scope stays held out for a recipe chosen that way.

``report`` pools each row's score over the given seeds, joins the folds, and gives the first ranking against each
other one as paired intervals that resample whole users (``recast.metrics.clustered_bootstrap``: a user's rows
share a history, so rows are not independent draws).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

from ops.experiments.policy import Paths, prepare, train_and_score

log = logging.getLogger("crossfit")
FOLDS = 6  # fold 0 (the held-out users) and five folds of the fit users, each about fold 0's size
FOLD_SEED = 2  # the splits' seeds are 0 (held out) and 1 (fit / tune)
METRICS = ("HR@1", "HR@10", "NDCG@10")


SCOPES = ("held-out", "tuning")


def _root(paths: Paths, scope: str) -> Path:
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of {SCOPES}")
    return paths.out / ("crossfit" if scope == "held-out" else "crossfit-tuning")


def fold_files(paths: Paths, fold: int, scope: str = "held-out") -> tuple[Path, Path]:
    """(training rows, scored rows) of ``fold``: fold 0 is ``confirm``'s split, or ``tune``'s in the tuning scope."""
    folder = _root(paths, scope) / f"fold{fold}"
    if fold == 0 and scope == "held-out":
        return paths.split / "train.csv", paths.split / "heldout.csv"
    if fold == 0:
        return paths.inner / "fit.csv", paths.inner / "tune.csv"
    return folder / "train.csv", folder / "eval.csv"


def run_dir(paths: Paths, label: str, fold: int, seed: int, scope: str = "held-out") -> Path:
    """Where a recipe's run on a fold lives: the held-out fold 0's are ``confirm``'s own, not trained twice."""
    if fold == 0 and scope == "held-out":
        return paths.out / "confirm" / label / f"seed{seed}"
    return _root(paths, scope) / label / f"fold{fold}" / f"seed{seed}"


def prepare_folds(paths: Paths, folds: int = FOLDS, scope: str = "held-out") -> dict[int, int]:
    """Write folds 1 .. ``folds`` - 1 (module doc); the scored rows per fold, fold 0 included."""
    from recast.dataset import load_catalog, load_interactions, write_interactions
    from recast.windows import user_folds

    if not (paths.inner / "fit.csv").is_file():
        prepare(paths)
    source = paths.data / "valid.csv" if scope == "held-out" else paths.split / "train.csv"
    catalog = load_catalog(paths.data)
    rows = load_interactions(source, catalog)
    fit_users = {r.user_id for r in load_interactions(paths.inner / "fit.csv", catalog)}
    fold_of = {user: k + 1 for user, k in user_folds(fit_users, folds - 1, FOLD_SEED).items()}
    counts = {0: sum(1 for _ in load_interactions(fold_files(paths, 0, scope)[1], catalog))}
    for fold in range(1, folds):
        train_csv, eval_csv = fold_files(paths, fold, scope)
        train_csv.parent.mkdir(parents=True, exist_ok=True)
        scored = {i for i, r in enumerate(rows) if fold_of.get(r.user_id) == fold}
        counts[fold] = write_interactions(source, eval_csv, scored)
        write_interactions(source, train_csv, set(range(len(rows))) - scored)
    return counts


def run(paths: Paths, preset_name: str, folds: list[int], seed: int, beam_width: int, overrides: dict,
        scope: str = "held-out") -> None:  # fmt: skip
    """Train ``preset_name`` (plus ``overrides``) on each fold's training rows and score its rows."""
    from tqdm.auto import tqdm

    from recast.sft import preset

    label = preset_name + "".join(f"+{k}={v}" for k, v in sorted(overrides.items()))
    config = replace(preset(preset_name), seed=seed, **overrides)
    for fold in tqdm(folds, desc=f"{label} seed {seed}", unit="fold"):
        train_csv, eval_csv = fold_files(paths, fold, scope)
        if not eval_csv.is_file():
            raise SystemExit(f"{eval_csv}: no such fold; run `prepare` first")
        done = train_and_score(paths, train_csv, eval_csv, config, run_dir(paths, label, fold, seed, scope), beam_width)
        m = done["metrics"]["policy"]
        log.info(
            "%s fold %d seed %d: policy %.4f / %.4f / %.4f, %.0f s",
            label,
            fold,
            seed,
            m["HR@1"],
            m["HR@10"],
            m["NDCG@10"],
            done["train_seconds"],
        )


def fold_scores(paths: Paths, label: str, ranking: str, fold: int, seeds: list[int], scope: str = "held-out"
                ) -> dict[str, list[float]]:  # fmt: skip
    """Per metric, each of the fold's scored rows' score under ``ranking``, the mean over ``seeds``."""
    from recast.metrics import pooled_entry_scores

    eval_csv = str(fold_files(paths, fold, scope)[1])
    rankings = []
    for seed in seeds:
        path = run_dir(paths, label, fold, seed, scope) / "result.json"
        if not path.is_file():
            raise SystemExit(f"{path}: not run (`crossfit run --only {fold} --seed {seed}` with its recipe)")
        done = json.loads(path.read_text())
        if done["eval_csv"] != eval_csv or ranking not in done["ranks"]:
            raise SystemExit(
                f"{path}: scored {done['eval_csv']} with {sorted(done['ranks'])}, not {eval_csv}:{ranking}"
            )
        rankings.append(done["ranks"][ranking])
    return {metric: pooled_entry_scores(rankings, metric) for metric in METRICS}


def report(paths: Paths, specs: list[tuple[str, str]], seeds: list[int], folds: int = FOLDS,
           scope: str = "held-out") -> dict:  # fmt: skip
    """Each ranking per fold and over all folds, and the first against each other one (module doc)."""
    from recast.dataset import load_catalog, load_interactions
    from recast.metrics import clustered_bootstrap

    catalog = load_catalog(paths.data)
    users = {k: [r.user_id for r in load_interactions(fold_files(paths, k, scope)[1], catalog)] for k in range(folds)}
    scores = {spec: {k: fold_scores(paths, *spec, k, seeds, scope) for k in range(folds)} for spec in specs}
    out = {
        "scope": scope,
        "seeds": seeds,
        "rows": {k: len(u) for k, u in users.items()},
        "users": len({x for u in users.values() for x in u}),
        "rankings": {},
        "against_first": {},
    }
    for spec, per_fold in scores.items():
        name = ":".join(spec)
        out["rankings"][name] = {
            **{str(k): {m: sum(s[m]) / len(s[m]) for m in METRICS} for k, s in per_fold.items()},
            "all": {m: _mean([x for s in per_fold.values() for x in s[m]]) for m in METRICS},
        }
    first = specs[0]
    for other in specs[1:]:
        entry = {}
        for where in [*range(folds), "all"]:  # each fold, then all of them
            folds_in = range(folds) if where == "all" else [where]
            clusters = [u for k in folds_in for u in users[k]]
            entry[str(where)] = {
                m: clustered_bootstrap(
                    [a - b for k in folds_in for a, b in zip(scores[first][k][m], scores[other][k][m], strict=True)],
                    clusters,
                )
                for m in METRICS
            }
        out["against_first"][":".join(other)] = entry
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def markdown(result: dict) -> str:
    names = list(result["rankings"])
    folds = [k for k in result["rankings"][names[0]] if k != "all"]
    rows = result["rows"]
    lines = [
        f"{result['scope']} scope: {sum(rows.values())} rows of {result['users']} users in {len(folds)} folds; seeds "
        f"{','.join(map(str, result['seeds']))}; HR@1 / HR@10 / NDCG@10",
        "",
        "| ranking | " + " | ".join(f"fold {k} ({rows[int(k)]})" for k in folds) + " | all |",
        "| --- |" + " --- |" * (len(folds) + 1),
    ]
    for name, per in result["rankings"].items():
        cells = [" / ".join(f"{per[k][m]:.4f}" for m in METRICS) for k in [*folds, "all"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for other, entry in result["against_first"].items():
        lines += [
            "",
            f"{names[0]} − {other}, paired, users resampled:",
            "",
            "| scope | ΔHR@1 | ΔHR@10 | ΔNDCG@10 |",
            "| --- | --- | --- | --- |",
        ]
        for where, deltas in entry.items():
            cells = [f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]" for d in (deltas[m] for m in METRICS)]
            lines.append(f"| {'fold ' + where if where != 'all' else 'all'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from ops.experiments.policy import _value

    parser = argparse.ArgumentParser(
        prog="python -m ops.experiments.crossfit",
        description=__doc__.split("\n")[0],
        epilog="Runs live under OUT/crossfit[-tuning]/LABEL/fold<k>/seed<s>, but for the held-out scope's fold 0, "
        "whose runs are `policy confirm`'s (OUT/confirm/LABEL/seed<s>). LABEL is the preset and its --set fields, "
        "as `confirm` names them.",
    )
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"), help="data set directory")
    parser.add_argument("--out", type=Path, default=Path("runs/policy"), help="where `policy prepare` wrote its splits")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--beams", type=int, default=50, help="beam width for every evaluation")
    parser.add_argument("--folds", type=int, default=FOLDS, help="folds in all, fold 0 included")
    parser.add_argument("--scope", choices=SCOPES, default="held-out", help="held-out: measure fixed recipes "
                        "(fold 0 is the held-out users); tuning: choose among recipes, never reading the held-out "
                        "users (fold 0 is the tuning users)")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "prepare",
        help="write folds 1 .. FOLDS-1 of the fit users (fold 0: the held-out split, or with --scope "
        "tuning the tuning split)",
    )
    p = sub.add_parser("run", help="train a preset on some folds and score their rows (finished runs are reused)")
    p.add_argument("--preset", default="default")
    p.add_argument("--only", default=None, metavar="K,K", help="comma-separated folds (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a preset field")
    p = sub.add_parser("report", help="the rankings over all folds, the first against each other one")
    p.add_argument(
        "rankings",
        nargs="+",
        metavar="LABEL:RANKING",
        help="a run label (the preset, with its overrides as `confirm` names them) and one of its "
        "rankings: policy, ranked (the served ranker), served (the fixed mix), transition, ...",
    )
    p.add_argument("--seeds", default="0", help="comma-separated; each row's scores are their mean")
    args = parser.parse_args(argv)

    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    paths = Paths(args.data, args.out)
    if args.command == "prepare" or not fold_files(paths, args.folds - 1, args.scope)[1].is_file():
        # Seeded: the same folds whenever they are written.
        log.info("scored rows per fold: %s", prepare_folds(paths, args.folds, args.scope))
    if args.command == "run":
        overrides = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}
        folds = list(range(args.folds)) if args.only is None else [int(k) for k in args.only.split(",")]
        run(paths, args.preset, folds, args.seed, args.beams, overrides, args.scope)
    elif args.command == "report":
        specs = []
        for spec in args.rankings:
            label, sep, ranking = spec.rpartition(":")
            if not sep or not label or not ranking:
                parser.error(f"{spec!r}: expected LABEL:RANKING")
            specs.append((label, ranking))
        result = report(paths, specs, [int(s) for s in args.seeds.split(",")], args.folds, args.scope)
        out = _root(paths, args.scope) / "report.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(markdown(result))


if __name__ == "__main__":
    main()
