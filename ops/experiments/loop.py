"""The closed loop under four arms, on the same simulated traffic: what does a nightly refresh buy?

    python -m ops.experiments.loop --checkpoint runs/demo/sft --split runs/demo/split/heldout.csv \\
        --train runs/demo/split-gate/train.csv --gate runs/demo/split-gate/heldout.csv --out runs/loop-arms

Arms: ``off`` (no refresh: the initial model serves every day), ``none`` (the refresh's continued SFT and
scorer update, no RL step), ``grpo`` (+ the group-normalised RL step) and ``recast`` (+ ReCast's). Every arm
sees the same shoppers in the same order over the same days, with the same seed for their choices (a hit
changes what they do next, so the events differ once the lists do). Per day: served HR@10 from the shoppers'
actions, and the policy-alone HR@10 and Pass@1 of the version that served the day, re-ranked offline on the
day's visits. Each arm is compared with ``off`` by paired per-visit differences pooled over days 2..D (day 1
is served by the initial model in every arm), with 95% bootstrap intervals.
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
    paths = {}
    for folder in (run_dir / "models").glob("*"):
        if (folder / "manifest.json").is_file():
            paths[folder.name] = str(folder)
    return paths


def _per_visit(result: LoopResult, ranks: list[list[int | None]]) -> dict[str, list[float | None]]:
    served, hr10, pass1 = [], [], []
    for day, day_ranks in zip(result.days[1:], ranks[1:]):
        served += [None if h is None else float(h) for h in day.hit_by_visit]
        hr10 += [float(r is not None and r < 10) for r in day_ranks]
        pass1 += [float(r == 0) for r in day_ranks]
    return {"served HR@10": served, "policy HR@10": hr10, "policy Pass@1": pass1}


def compare(arms: dict[str, dict], resamples: int = 2000) -> dict:
    """Each arm minus ``off`` per metric: mean and 95% paired bootstrap interval over days 2..D's visits."""
    from recast.metrics import paired_bootstrap

    base = arms["off"]["per_visit"]
    out = {}
    for name, arm in arms.items():
        if name == "off":
            continue
        out[name] = {}
        for metric, values in arm["per_visit"].items():
            pairs = [(a, b) for a, b in zip(values, base[metric]) if a is not None and b is not None]
            if pairs:
                delta, low, high = paired_bootstrap([a for a, _ in pairs], [b for _, b in pairs], resamples)
                out[name][metric] = {"delta": delta, "low": low, "high": high, "rows": len(pairs)}
    return out


def markdown(arms: dict[str, dict], deltas: dict) -> str:
    lines = ["| arm | day | served by | visits | served HR@10 | policy HR@10 | policy Pass@1 | night's decision |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, arm in arms.items():
        for day, (hr, p1) in zip(arm["result"]["days"], arm["policy_by_day"]):
            version = max(day["versions"], key=day["versions"].get)
            decision = (day["refresh"] or {}).get("decision") or (day["refresh"] or {}).get("status") or "-"
            lines.append(f"| {name} | {day['day']} | {version} | {day['visits']} | "
                         f"{day['hits'] / max(day['visits'], 1):.4f} | {hr:.4f} | {p1:.4f} | {decision} |")  # fmt: skip
    lines += ["", "| arm − off (days 2..D, paired per visit) | served HR@10 | policy HR@10 | policy Pass@1 |",
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
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from recast.dataset import load_catalog, load_interactions

    rows = load_interactions(args.split, load_catalog(args.data))
    plan = split_days([Visit(r.user_id, list(r.history), r.target) for r in rows], args.days)
    arms: dict[str, dict] = {}
    for name in args.arms.split(","):
        run_dir = (args.out / name).resolve()
        config = LoopConfig(days=args.days, period_s=args.period_s, method=None if name == "off" else name,
                            seed=args.seed)  # fmt: skip
        result = run_loop(args.checkpoint.resolve(), plan, run_dir, args.data.resolve(), config,
                          train_csv=args.train.resolve() if args.train else None,
                          gate_csv=args.gate.resolve() if args.gate else None,
                          say=lambda m, n=name: print(f"[{n}] {m}", flush=True))  # fmt: skip
        paths = {result.initial_version: str(args.checkpoint.resolve()), **_registry_paths(result, run_dir)}
        ranks = policy_ranks(result, plan, paths, args.data)
        by_day = [(sum(r is not None and r < 10 for r in d) / max(len(d), 1), sum(r == 0 for r in d) / max(len(d), 1))
                  for d in ranks]  # fmt: skip
        plot(result, run_dir / "loop.png", f"refresh arm: {name}")
        print(day_table(result), flush=True)
        arms[name] = {"result": json.loads(result.to_json()), "policy_by_day": by_day,
                      "per_visit": _per_visit(result, ranks)}  # fmt: skip
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
