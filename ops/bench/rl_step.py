"""RL step cost, method against method, under the same conditions: steps interleaved in one process.

Runs of an experiment happen at different times, so on a shared machine their
timings see different loads. Here every method gets its own trainer (its own copy of
the SFT policy) on the same contexts, and their steps alternate: step i of every
method runs before step i + 1 of any, so a change in the machine's load hits all of
them alike. Prints the median actor-update time, whole-step time (rollout, anchor
scoring, update; the probe excluded), actor rows and autograd-saved bytes per method,
and the ratios against the baseline.

    python -m ops.bench.rl_step --sft runs/experiment/sft --train runs/experiment/splits/rl.csv \\
        --replay runs/experiment/splits/sft.csv --width 16 --steps 12
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
from pathlib import Path

import torch

BASELINE = "grpo"


def main(argv: list[str] | None = None) -> None:
    from learner.rl.config import RLConfig
    from learner.rl.contexts import offline_contexts
    from learner.rl.evalset import EvalSet
    from learner.rl.trainer import RLTrainer
    from recast.checkpoint import load_checkpoint
    from recast.dataset import load_catalog, load_interactions

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sft", type=Path, required=True, help="SFT checkpoint directory")
    parser.add_argument("--train", type=Path, required=True, help="interaction CSV of the RL contexts")
    parser.add_argument("--replay", type=Path, help="interaction CSV of older windows (for a replaying method)")
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"))
    parser.add_argument("--methods", default="grpo,recast,recast-literal")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12, help="steps per method (the first is a warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    catalog = load_catalog(args.data)
    sft = load_checkpoint(args.sft)
    contexts = offline_contexts(load_interactions(args.train, catalog), catalog.index, 10)
    replay = offline_contexts(load_interactions(args.replay, catalog), catalog.index, 10) if args.replay else None
    methods = args.methods.split(",")
    trainers = {
        m: RLTrainer(sft, catalog, contexts, EvalSet([], []), RLConfig(method=m, width=args.width, probe_every=0),
                     Path("/dev/null"), progress=False, replay=replay)  # fmt: skip
        for m in methods
    }
    records: dict[str, list[dict]] = {m: [] for m in methods}
    sink = io.StringIO()  # repair records are not kept here
    for index in range(args.steps):
        for m, trainer in trainers.items():
            records[m].append(trainer.step(index, sink))
    figures = {}
    for m, recs in records.items():
        timed = recs[1:]  # the first step warms caches and the allocator
        figures[m] = {
            "actor_s": statistics.median(r["actor_s"] for r in timed),
            "step_s": statistics.median(r["step_s"] for r in timed),
            "rollout_s": statistics.median(r["rollout_s"] for r in timed),
            "actor_rows": statistics.fmean(r["actor_rows"] for r in timed),
            "saved_mib": statistics.fmean(r["saved_bytes"] for r in timed) / 2**20,
        }
    base = figures.get(BASELINE)
    print(f"W = {args.width}, {args.steps - 1} timed steps each, interleaved, {args.threads} threads")
    print("| method | actor s/step | whole step s | rollout s | actor rows | autograd MiB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for m, f in figures.items():
        ratio = "" if base is None or m == BASELINE else f" ({base['actor_s'] / f['actor_s']:.1f}x)"
        step_ratio = "" if base is None or m == BASELINE else f" ({base['step_s'] / f['step_s']:.1f}x)"
        print(f"| {m} | {f['actor_s']:.3f}{ratio} | {f['step_s']:.3f}{step_ratio} | {f['rollout_s']:.3f} | "
              f"{f['actor_rows']:.0f} | {f['saved_mib']:.0f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"width": args.width, "steps": args.steps, "figures": figures}, indent=2))


if __name__ == "__main__":
    main()
