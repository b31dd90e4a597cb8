"""``recast experiment``: ReCast variants against the group-normalised baseline, head to head.

Every run starts from the same SFT checkpoint with the same contexts, rollout budget and
eval split; an arm is a named method plus signal overrides (``ARMS``), run once per
seed (the seed orders the contexts and draws the replay).

Users are split three ways inside the training file, so RL learns on contexts the
SFT never saw (recast-method.md, finding 1) and choices are made on users neither saw:

    sft.csv   the SFT policy's users (also the "older windows" a replaying signal reuses)
    rl.csv    RL contexts (the windows of these users' rows)
    tune.csv  for choosing hyper-parameters (``--eval`` it instead of the held-out file)

With ``lr_grid`` every arm runs at every learning rate on the same footing, and the
report picks each arm's rate by one rule fixed in advance (``ops.experiments.report``).
Each run is its own process, so its peak RSS is its own; a run that already finished
with the same configuration is reused, so an interrupted experiment resumes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import time
from dataclasses import dataclass, replace
from pathlib import Path

from learner.rl.config import RLConfig
from ops.experiments.report import build_report, write_report

# Arm name -> (method, signal overrides). "grpo" is the baseline the ratios are taken against (when it runs).
ARMS: dict[str, tuple[str, dict]] = {
    "grpo": ("grpo", {}),
    # without the flat groups' KL-only rows: a tenth of the rows, but the policy drifts further (spec.skip_flat)
    "grpo-lean": ("grpo", {"skip_flat": True}),
    "grpo+repair": ("grpo", {"repair": True}),
    "grpo-struct": ("grpo", {"reward": "structural"}),
    "grpo-struct+repair": ("grpo", {"reward": "structural", "repair": True}),
    "recast": ("recast", {}),  # the chosen form (recast.signals.spec.METHODS)
    "recast-literal": ("recast-literal", {}),
    # ablations of the literal reading (issue 4)
    "literal-pg": ("recast-literal", {"contrast_loss": "pg"}),
    "literal-logistic": ("recast-literal", {"contrast_loss": "logistic"}),
    "literal-norepair": ("recast-literal", {"repair": False}),
    "literal-pos": ("recast-literal", {"negative_weight": 0.0}),  # repair, then +1 on the positive alone
    # issue 12's variants
    "above": ("recast-literal", {"repair": False, "hits": "above"}),  # real-hit contrast alone
    "above+reach": (
        "recast-literal",
        {"hits": "above", "anchors": "boundary", "reach_temperature": 1.0, "anchor_cap": 0.25},
    ),  # fmt: skip
    "pair+reach": ("recast-literal", {"anchors": "boundary", "reach_temperature": 1.0, "anchor_cap": 0.25}),
    "above+sup": (
        "recast-literal",
        {"hits": "above", "anchors": "supervised", "anchor_weight": 0.25, "replay": 16},
    ),  # fmt: skip
    "above+sup-noreplay": ("recast-literal", {"hits": "above", "anchors": "supervised", "anchor_weight": 0.25}),
    "above+sup-cap": (
        "recast-literal",
        {"hits": "above", "anchors": "supervised", "anchor_weight": 0.25, "replay": 16, "anchor_cap": 0.5},
    ),  # fmt: skip
    # the contrast half removed: supervised anchors and replay alone (continued SFT inside the RL loop)
    "sup+replay": ("recast-literal", {"hits": "none", "anchors": "supervised", "anchor_weight": 0.25, "replay": 16}),
    "above-struct": ("recast-literal", {"repair": False, "hits": "above", "reward": "structural"}),
    "above-struct+sup": (
        "recast-literal",
        {"hits": "above", "reward": "structural", "anchors": "supervised", "anchor_weight": 0.25, "replay": 16},
    ),  # fmt: skip
}
# Learning rates chosen per arm on the tuning users (BENCHMARKS.md, issue 12: W = 16, seed 0, every arm over
# 3e-5 / 1e-4 / 3e-4, widened by one step where the best sat at an edge; the rule of report.choose_lrs). An arm
# not listed runs at the base config's rate. grpo-lean takes grpo's rate (tuned at 1e-3 only).
TUNED_LR: dict[str, float] = {
    "grpo": 3e-4,
    "grpo-lean": 3e-4,
    "recast": 3e-4,
    "above": 3e-4,
    "above+reach": 3e-5,
    "recast-literal": 1e-5,
}


@dataclass(frozen=True)
class ExperimentPlan:
    data: Path
    train_csv: Path
    eval_csv: Path | None  # None: the tune split
    out: Path
    widths: tuple[int, ...] = (16, 32)
    arms: tuple[str, ...] = ("grpo", "recast")
    seeds: tuple[int, ...] = (0,)
    base: RLConfig = RLConfig()
    lr: dict | None = None  # arm -> learning rate (over TUNED_LR)
    lr_grid: tuple[float, ...] = ()  # tuning: every arm at every rate
    sft_preset: str = "long-context"  # the start TUNED_LR was chosen from (issue 12)
    rl_share: float = 0.2
    tune_share: float = 0.1
    seed: int = 0  # the split's and the SFT start's: one start for every run
    threads: int = 2
    jobs: int = 1  # runs at once, each in its own process with ``threads`` threads
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise ValueError(f"unknown arm(s) {unknown}; choose from {sorted(ARMS)}")
        if not (0 < self.rl_share and 0 < self.tune_share and self.rl_share + self.tune_share < 1):
            raise ValueError("rl_share and tune_share must be > 0 and sum to less than 1")
        if not self.seeds or self.jobs < 1:
            raise ValueError("need at least one seed and jobs >= 1")

    def arm_lrs(self, arm: str) -> tuple[float, ...]:
        if self.lr_grid:
            return self.lr_grid
        return ((self.lr or {}).get(arm, TUNED_LR.get(arm, self.base.lr)),)

    def run_name(self, arm: str, lr: float) -> str:
        return f"{arm}@{lr:g}" if self.lr_grid else arm


def split_training_users(train_csv: Path, data: Path, out: Path, rl_share: float, tune_share: float, seed: int):
    """sft.csv / rl.csv / tune.csv by user (a seeded hash, stable across runs)."""
    from recast.dataset import load_catalog, load_interactions, write_interactions
    from recast.windows import split_users

    rows = load_interactions(train_csv, load_catalog(data))
    users = [r.user_id for r in rows]
    not_sft = split_users(users, rl_share + tune_share, seed + 101)
    tune = split_users(not_sft, tune_share / (rl_share + tune_share), seed + 202)
    parts = {
        "sft": {i for i, r in enumerate(rows) if r.user_id not in not_sft},
        "rl": {i for i, r in enumerate(rows) if r.user_id in not_sft and r.user_id not in tune},
        "tune": {i for i, r in enumerate(rows) if r.user_id in tune},
    }
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, keep in parts.items():
        # Written aside and moved in only when it changed: runs of another experiment on the same
        # directory may be reading these files right now, and must never see half of one.
        path, tmp = out / f"{name}.csv", out / f".{name}.csv.{os.getpid()}"
        counts[name] = write_interactions(train_csv, tmp, keep)
        if path.is_file() and path.read_bytes() == tmp.read_bytes():
            tmp.unlink()
        else:
            os.replace(tmp, path)
    return {name: out / f"{name}.csv" for name in parts}, counts


def ensure_sft(plan: ExperimentPlan, sft_csv: Path) -> Path:
    """Train the shared SFT start once; reuse it when its manifest matches this data."""
    from learner.sft_trainer import train_sft
    from recast.checkpoint import read_manifest
    from recast.dataset import fingerprint
    from recast.sft import preset

    config = replace(preset(plan.sft_preset), seed=plan.seed)
    out = plan.out / "sft"
    if (out / "manifest.json").is_file():
        manifest = read_manifest(out)
        if (
            manifest.get("data", {}).get("train_fingerprint") == fingerprint([sft_csv])
            and manifest.get("sft_config") == config.to_dict()
        ):
            return out
    train_sft(plan.data, sft_csv, config, out, progress=plan.progress)
    return out


def _start_key(sft: Path, eval_csv: Path, config: RLConfig) -> str:
    """What decides the SFT start's eval ranks: the checkpoint, the eval file and how it is scored."""
    from recast.checkpoint import read_manifest
    from recast.dataset import fingerprint

    parts = [read_manifest(sft)["sha256"]["model.safetensors"], fingerprint([eval_csv]), config.eval_unit,
             config.eval_rows, config.eval_beams, config.max_history]  # fmt: skip
    return json.dumps(parts)


def _run_arm(args: tuple) -> None:
    """Child process: one RL run, then its result and its own peak RSS to result.json. The SFT start's
    eval ranks are shared through ``start_ranks.json`` beside the SFT checkpoint (scored once, not per run)."""
    import torch

    from learner.rl.plots import plot_run
    from learner.rl.trainer import EVAL_RANKS, train_rl

    data, sft, rl_csv, eval_csv, replay_csv, config, out, threads, progress = args
    torch.set_num_threads(threads)
    started = time.perf_counter()
    cache, key = Path(sft).parent / "start_ranks.json", _start_key(Path(sft), eval_csv, config)
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    result = train_rl(data, sft, rl_csv, eval_csv, config, out, progress=progress, replay_csv=replay_csv,
                      start_ranks=known.get(key))  # fmt: skip
    if key not in known:  # a race between two runs writes the same ranks twice: harmless
        known = json.loads(cache.read_text()) if cache.is_file() else {}
        known[key] = json.loads((out / EVAL_RANKS).read_text())["start"]
        cache.write_text(json.dumps(known) + "\n")
    plot_run(result.history, out / "diagnostics.png", title=f"{config.method} W={config.width} ({out.name})")
    summary = {
        "config": config.to_dict(),
        "eval_csv": str(eval_csv),
        "start_eval": result.start_eval,
        "final_eval": result.final_eval,
        "seconds": time.perf_counter() - started,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "checkpoint": str(result.checkpoint),
    }
    (out / "result.json").write_text(json.dumps(summary, indent=2) + "\n")


def _finished(out: Path, config: RLConfig, eval_csv: Path) -> bool:
    """A run an interrupted experiment already completed: same configuration, same eval split."""
    path = out / "result.json"
    if not path.is_file():
        return False
    done = json.loads(path.read_text())
    same = _comparable(done.get("config", {})) == _comparable(config.to_dict())
    return same and done.get("eval_csv") == str(eval_csv)


def _comparable(config: dict) -> dict:
    """A config dict with fields added since it was written filled with their defaults (they cannot have
    changed what that run did), so adding an option does not invalidate finished runs."""
    from dataclasses import fields

    from recast.signals.spec import SignalSpec

    base = {f.name: f.default for f in fields(RLConfig) if f.name != "signal"}
    spec = {f.name: f.default for f in fields(SignalSpec)}
    return {**base, **config, "spec": {**spec, **config.get("spec", {})}}


def arm_config(plan: ExperimentPlan, arm: str, width: int, seed: int, lr: float) -> RLConfig:
    method, signal = ARMS[arm]
    return replace(plan.base, method=method, signal=dict(signal), width=width, seed=seed, lr=lr)


def planned_runs(plan: ExperimentPlan) -> list[tuple[int, str, int, RLConfig, Path]]:
    """(width, run name, seed, config, directory) of every run, in order."""
    runs = []
    for width in plan.widths:
        for arm in plan.arms:
            for lr in plan.arm_lrs(arm):
                for seed in plan.seeds:
                    name = plan.run_name(arm, lr)
                    out = plan.out / f"W{width}" / name / f"s{seed}"
                    runs.append((width, name, seed, arm_config(plan, arm, width, seed, lr), out))
    return runs


def run_experiment(plan: ExperimentPlan, log=print) -> dict:
    from learner.rl.plots import read_diagnostics

    splits, counts = split_training_users(
        plan.train_csv, plan.data, plan.out / "splits", plan.rl_share, plan.tune_share, plan.seed
    )
    log(f"users split: {counts} rows (sft / rl / tune)")
    eval_csv = plan.eval_csv or splits["tune"]
    sft = ensure_sft(plan, splits["sft"])
    todo = []
    for width, name, seed, config, out in planned_runs(plan):
        if _finished(out, config, eval_csv):
            log(f"W={width} {name} seed {seed}: already finished with this configuration, reusing {out}")
            continue
        log(f"W={width} {name} seed {seed}: lr {config.lr:g}, {config.steps} steps x {config.contexts_per_step}")
        todo.append((plan.data, sft, splits["rl"], eval_csv, splits["sft"], config, out, plan.threads, plan.progress))
    # A fresh process per run (maxtasksperchild=1): its peak RSS is its own.
    with multiprocessing.get_context("spawn").Pool(plan.jobs, maxtasksperchild=1) as pool:
        for _ in pool.imap_unordered(_run_arm, todo):
            pass
    runs: dict[int, dict[str, dict[int, dict]]] = {}
    for width, name, seed, _, out in planned_runs(plan):
        result = json.loads((out / "result.json").read_text())
        result["diagnostics"] = read_diagnostics(out / "diagnostics.jsonl")
        result["ranks"] = json.loads((out / "eval_ranks.json").read_text())
        runs.setdefault(width, {}).setdefault(name, {})[seed] = result
    report = build_report(plan, runs, counts, eval_csv)
    write_report(plan.out, report, runs)
    return report
