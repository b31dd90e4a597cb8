"""Held-out hit rates by how often each target was trained on (issue 15): where one ranking gains on another.

    python -m ops.experiments.targets "runs/policy/confirm/default:policy" "runs/policy/confirm/long-context:served"
    python -m ops.experiments.targets --inner "runs/policy/tune/default+sharp0.5:policy" \
        "runs/policy/tune/default+base:policy"

Each argument is a ``confirm`` folder (``ops.experiments.policy confirm``; it holds ``seed*/result.json``) and one of
its rankings, pooled over the folder's seeds as ``confirm`` pools them (each row's mean). Rows are grouped by their
target: an item of the row's own history (a repeat), else by how many counted windows of ``split/train.csv`` end in
it (``recast.windows.build_sequences`` over the rows as the one-item policy reads them), so 0 is an item no window
taught and 20+ the items everyone buys. The table gives each ranking's HR@10 per group and, for the first two, the
paired interval of the first minus the second and that group's share of the overall difference (the shares sum to
it). It reads finished runs only; nothing is trained. ``--inner`` does the same for ``tune`` folders: the tuning rows
(``inner/tune.csv``) grouped against ``inner/fit.csv``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

GROUPS = ("a history item", "0", "1-4", "5-19", "20+")


def count_group(n: float) -> str:
    """The group of an item taught by ``n`` counted windows (``GROUPS`` after the repeats).

    >>> [count_group(n) for n in (0, 1, 4, 5, 19, 20)]
    ['0', '1-4', '1-4', '5-19', '5-19', '20+']
    """
    return "0" if n == 0 else "1-4" if n < 5 else "5-19" if n < 20 else "20+"


def target_groups(data: Path, train_csv: Path, eval_csv: Path) -> list[str]:
    """Per row of ``eval_csv``, its group (module doc) against the windows of ``train_csv``."""
    from learner.sft_trainer import SOURCE_HISTORY
    from recast.dataset import load_catalog, load_interactions
    from recast.windows import build_sequences

    catalog = load_catalog(data)
    taught: Counter[int] = Counter()
    for seq in build_sequences(load_interactions(train_csv, catalog), catalog.index, SOURCE_HISTORY):
        for item, weight in zip(seq.items[1:], seq.weights[1:], strict=True):
            taught[item] += weight
    groups = []
    for row in load_interactions(eval_csv, catalog):
        groups.append(GROUPS[0] if row.target in row.history else count_group(taught[catalog.index[row.target]]))
    return groups


def pooled_hits(folder: Path, ranking: str) -> list[float]:
    """Each held-out row's HR@10 under ``ranking``, the mean over the folder's seeds."""
    from recast.metrics import pooled_entry_scores

    results = sorted(folder.glob("seed*/result.json"))
    if not results:
        raise SystemExit(f"{folder}: no seed*/result.json (a `policy confirm` folder)")
    rankings = []
    for path in results:
        ranks = json.loads(path.read_text())["ranks"]
        if ranking not in ranks:
            raise SystemExit(f"{path}: no ranking {ranking!r}; it has {sorted(ranks)}")
        rankings.append(ranks[ranking])
    return pooled_entry_scores(rankings, "HR@10")


def by_target(groups: list[str], hits: list[list[float]]) -> list[dict]:
    """Per group (and "all"): rows, each ranking's HR@10 and, given two rankings or more, the first minus the
    second as a paired interval and as that group's share of the overall difference."""
    from recast.metrics import paired_bootstrap

    for h in hits:
        if len(h) != len(groups):
            raise ValueError(f"{len(h)} rows scored, {len(groups)} held-out rows: rankings of another split?")
    table = []
    for group in (*GROUPS, "all"):
        rows = [i for i, g in enumerate(groups) if group in (g, "all")]
        if not rows:
            continue
        entry = {"group": group, "rows": len(rows), "hr10": [sum(h[i] for i in rows) / len(rows) for h in hits]}
        if len(hits) > 1:
            first, second = [hits[0][i] for i in rows], [hits[1][i] for i in rows]
            entry["delta"] = paired_bootstrap(first, second)
            entry["share"] = (sum(first) - sum(second)) / len(groups)
        table.append(entry)
    return table


def markdown(specs: list[str], table: list[dict]) -> str:
    head = "| target | rows | " + " | ".join(specs) + (" | first − second | share of the difference |" if len(specs) > 1
                                                      else " |")  # fmt: skip
    lines = [head, "| " + " | ".join("---" for _ in head.strip("|").split("|")) + " |"]
    for e in table:
        cells = [e["group"], str(e["rows"]), *(f"{v:.3f}" for v in e["hr10"])]
        if "delta" in e:
            mean, low, high = e["delta"]
            cells += [f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]", f"{e['share']:+.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.experiments.targets", description=__doc__.split("\n")[0])
    parser.add_argument("rankings", nargs="+", metavar="FOLDER:RANKING",
                        help="a confirm (or, with --inner, tune) folder and one of its rankings (policy, ranked, "
                        "served, transition, ...)")  # fmt: skip
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"), help="data set directory")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/policy"), help="where `policy prepare` wrote split/ and inner/"
    )
    parser.add_argument("--inner", action="store_true", help="tune folders: the tuning rows against inner/fit.csv")
    args = parser.parse_args(argv)
    specs = []
    for spec in args.rankings:
        folder, sep, ranking = spec.rpartition(":")
        if not sep or not folder or not ranking:
            parser.error(f"{spec!r}: expected FOLDER:RANKING")
        specs.append((Path(folder), ranking))
    folder, train, rows = ("inner", "fit.csv", "tune.csv") if args.inner else ("split", "train.csv", "heldout.csv")
    groups = target_groups(args.data, args.out / folder / train, args.out / folder / rows)
    table = by_target(groups, [pooled_hits(folder, ranking) for folder, ranking in specs])
    print(markdown(args.rankings, table))


if __name__ == "__main__":
    main()
