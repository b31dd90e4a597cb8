"""The closed loop under four arms, on the same simulated traffic: what does a nightly refresh buy?

    python -m ops.experiments.loop --checkpoint runs/demo/sft --split runs/demo/split/heldout.csv \\
        --train runs/demo/split-gate/train.csv --gate runs/demo/split-gate/heldout.csv --out runs/loop-arms \\
        --seeds 0,1,2

Arms: ``off`` (no refresh: the initial model serves every day), ``none`` (the refresh's continued SFT and
scorer update, no RL step), ``grpo`` (+ the group-normalised RL step) and ``recast`` (+ ReCast's). Every arm
sees the same shoppers in the same order over the same days, with the same seed for their choices (a hit
changes what they do next, so the events differ once the lists do). Per day: served HR@10 from the shoppers'
actions, and the policy-alone HR@10 and Pass@1 of the version that served the day, re-ranked offline on the
day's visits. Each seed (``--seeds``) runs every arm again with other shopper choices and other refresh
seeds. Each arm is compared with ``off`` over days 2..D (day 1 is served by the initial model in every arm):
per visit, the arm's score minus ``off``'s, averaged over the seeds, then a 95% bootstrap over the visits
(resampling visits, not seed copies of one visit, which are not independent).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ops.sim.loop import LoopConfig, LoopResult, run_loop, split_days
from ops.sim.loop_report import day_table, plot, policy_ranks
from ops.sim.shoppers import Visit

ARMS = ("off", "none", "grpo", "recast")


def _registry_paths(result: LoopResult, run_dir: Path) -> dict[str, str]:
    """Version -> checkpoint folder: the initial model and every child the refreshes wrote."""
    from recast.checkpoint import manifest_version

    paths = {}
    for folder in (run_dir / "models").glob("*"):
        if (folder / "manifest.json").is_file():
            paths[manifest_version(json.loads((folder / "manifest.json").read_text()))] = str(folder)
    return paths


def _per_visit(result: LoopResult, ranks: list[list[int | None]]) -> dict[str, list[float | None]]:
    served, hr10, pass1 = [], [], []
    for day, day_ranks in zip(result.days[1:], ranks[1:]):
        served += [None if h is None else float(h) for h in day.hit_by_visit]
        hr10 += [float(r is not None and r < 10) for r in day_ranks]
        pass1 += [float(r == 0) for r in day_ranks]
    return {"served HR@10": served, "policy HR@10": hr10, "policy Pass@1": pass1}


def seed_mean(runs: list[list[float | None]]) -> list[float | None]:
    """Per visit, the mean over seeds (None where any seed has no score for it).

    >>> seed_mean([[1.0, None, 0.0], [0.0, 1.0, 0.0]])
    [0.5, None, 0.0]
    """
    return [None if any(v is None for v in vs) else sum(vs) / len(vs) for vs in zip(*runs, strict=True)]


def compare(arms: dict[str, dict], resamples: int = 2000) -> dict:
    """Each arm minus ``off`` per metric: the mean over visits of the seed-averaged paired difference, with a 95%
    bootstrap interval over visits (days 2..D)."""
    from recast.metrics import paired_bootstrap

    base = {m: seed_mean([run[m] for run in arms["off"]["per_visit"]]) for m in arms["off"]["per_visit"][0]}
    out = {}
    for name, arm in arms.items():
        if name == "off":
            continue
        out[name] = {}
        for metric in arm["per_visit"][0]:
            values = seed_mean([run[metric] for run in arm["per_visit"]])
            pairs = [(a, b) for a, b in zip(values, base[metric], strict=True) if a is not None and b is not None]
            if pairs:
                delta, low, high = paired_bootstrap([a for a, _ in pairs], [b for _, b in pairs], resamples)
                out[name][metric] = {"delta": delta, "low": low, "high": high, "rows": len(pairs)}
    return out


def markdown(arms: dict[str, dict], deltas: dict) -> str:
    """Per arm and day, the means over seeds; then each arm against ``off``."""
    seeds = len(next(iter(arms.values()))["runs"])
    lines = [f"| arm | day | visits | served HR@10 | policy HR@10 | policy Pass@1 | decisions ({seeds} seeds) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, arm in arms.items():
        runs = arm["runs"]
        for d, day in enumerate(runs[0]["result"]["days"]):
            days = [run["result"]["days"][d] for run in runs]
            served = sum(x["hits"] / max(x["visits"], 1) for x in days) / len(days)
            hr = sum(run["policy_by_day"][d][0] for run in runs) / len(runs)
            p1 = sum(run["policy_by_day"][d][1] for run in runs) / len(runs)
            nights = [x["refresh"] or {} for x in days]
            decisions = [n.get("decision") or n.get("status") or "-" for n in nights]
            summary = ", ".join(f"{k} x{decisions.count(k)}" for k in sorted(set(decisions)))
            lines.append(f"| {name} | {day['day']} | {day['visits']} | {served:.4f} | {hr:.4f} | {p1:.4f} "
                         f"| {summary} |")  # fmt: skip
    lines += ["", "| arm − off (days 2..D, per visit, seed-averaged) | served HR@10 | policy HR@10 | policy Pass@1 |",
              "| --- | --- | --- | --- |"]  # fmt: skip
    for name, metrics in deltas.items():
        cells = [f"{m['delta']:+.4f} [{m['low']:+.4f}, {m['high']:+.4f}]" for m in metrics.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="the initial model")
    parser.add_argument("--split", type=Path, required=True, help="shoppers: users no model trained on")
    parser.add_argument("--train", type=Path, default=None, help="the initial model's training CSV (replay)")
    parser.add_argument("--gate", type=Path, default=None, help="the gate's fixed offline split")
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"))
    parser.add_argument("--out", type=Path, default=Path("runs/loop-arms"))
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from {', '.join(ARMS)}")
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--period-s", type=int, default=30)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; each runs every arm again")
    args = parser.parse_args(argv)
    from recast.dataset import load_catalog, load_interactions

    rows = load_interactions(args.split, load_catalog(args.data))
    plan = split_days([Visit(r.user_id, list(r.history), r.target) for r in rows], args.days)
    names, seeds = args.arms.split(","), [int(x) for x in args.seeds.split(",")]
    arms: dict[str, dict] = {name: {"runs": [], "per_visit": []} for name in names}
    for seed in seeds:
        for name in names:
            run_dir = (args.out / f"seed{seed}" / name).resolve()
            config = LoopConfig(days=args.days, period_s=args.period_s, method=None if name == "off" else name,
                                seed=seed)  # fmt: skip
            result = run_loop(args.checkpoint.resolve(), plan, run_dir, args.data.resolve(), config,
                              train_csv=args.train.resolve() if args.train else None,
                              gate_csv=args.gate.resolve() if args.gate else None,
                              say=lambda m, n=f"{name} seed {seed}": print(f"[{n}] {m}", flush=True))  # fmt: skip
            paths = {result.initial_version: str(args.checkpoint.resolve()), **_registry_paths(result, run_dir)}
            ranks = policy_ranks(result, plan, paths, args.data)
            by_day = [(sum(r is not None and r < 10 for r in d) / max(len(d), 1),
                       sum(r == 0 for r in d) / max(len(d), 1)) for d in ranks]  # fmt: skip
            plot(result, run_dir / "loop.png", f"refresh arm: {name}, seed {seed}")
            print(day_table(result), flush=True)
            arms[name]["runs"].append({"seed": seed, "result": json.loads(result.to_json()), "policy_by_day": by_day})
            arms[name]["per_visit"].append(_per_visit(result, ranks))
    deltas = compare(arms) if "off" in arms else {}
    report = {"arms": {n: {k: v for k, v in a.items() if k != "per_visit"} for n, a in arms.items()},
              "deltas_vs_off": deltas}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.out / "report.md").write_text(markdown(arms, deltas) + "\n")
    print(markdown(arms, deltas))
    return report


if __name__ == "__main__":
    main()
