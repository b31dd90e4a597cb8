"""``recast experiment``: ReCast against the group-normalised baseline, head to head.

Every arm starts from the same SFT checkpoint with the same seed, contexts, rollout
budget and eval split; only the signal strategy (and its tuned learning rate) differs.

Users are split three ways inside the training file, so RL learns on contexts the
SFT never saw (recast-method.md, finding 1) and learning rates are chosen on users
neither saw:

    sft.csv   the SFT policy's users
    rl.csv    RL contexts (the windows of these users' rows)
    tune.csv  for choosing hyper-parameters (``--eval`` it instead of the held-out file)

Each arm runs in its own process, so its peak RSS is its own; an arm that already
finished with the same configuration is reused, so an interrupted run resumes. The report
(``report.json``, ``report.md``, ``*.png``) has, per search width: final
Pass@1/HR@10/NDCG@10 of SFT and every arm, the relative Pass@1 gain, the
matched-budget ratio, actor-update and step time ratios, memory ratios and the
all-zero ratio over training.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import time
from dataclasses import dataclass, replace
from pathlib import Path

from learner.rl.config import RLConfig
from ops.experiments.report import BASELINE, build_report, write_report

# Arm name -> RLConfig overrides. "grpo" is the baseline the ratios are taken against.
ARMS: dict[str, dict] = {
    "grpo": {"method": "grpo", "repair": False},
    "grpo+repair": {"method": "grpo", "repair": True},
    "recast": {"method": "recast", "repair": True, "contrast_loss": "boundary"},
    "recast-pg": {"method": "recast", "repair": True, "contrast_loss": "pg"},
    "recast-logistic": {"method": "recast", "repair": True, "contrast_loss": "logistic"},
    "recast-norepair": {"method": "recast", "repair": False, "contrast_loss": "boundary"},
    # The contrast half removed: repair, then +1 on the positive alone (supervised on the anchors).
    "recast-pos": {"method": "recast", "repair": True, "negative_weight": 0.0},
}


@dataclass(frozen=True)
class ExperimentPlan:
    data: Path
    train_csv: Path
    eval_csv: Path | None  # None: the tune split
    out: Path
    widths: tuple[int, ...] = (16, 32)
    arms: tuple[str, ...] = ("grpo", "recast")
    base: RLConfig = RLConfig()
    lr: dict | None = None  # method -> learning rate
    sft_preset: str = "default"
    rl_share: float = 0.2
    tune_share: float = 0.1
    seed: int = 0
    threads: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise ValueError(f"unknown arm(s) {unknown}; choose from {sorted(ARMS)}")
        if BASELINE not in self.arms:
            raise ValueError(f"the arms must include the baseline {BASELINE!r}: every ratio is taken against it")
        if not (0 < self.rl_share and 0 < self.tune_share and self.rl_share + self.tune_share < 1):
            raise ValueError("rl_share and tune_share must be > 0 and sum to less than 1")


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
    counts = {name: write_interactions(train_csv, out / f"{name}.csv", keep) for name, keep in parts.items()}
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


def _run_arm(args: tuple) -> None:
    """Child process: one RL run, then its result and its own peak RSS to result.json."""
    import torch

    from learner.rl.plots import plot_run
    from learner.rl.trainer import train_rl

    data, sft, rl_csv, eval_csv, config, out, threads, progress = args
    torch.set_num_threads(threads)
    started = time.perf_counter()
    result = train_rl(data, sft, rl_csv, eval_csv, config, out, progress=progress)
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
    """An arm an interrupted experiment already completed: same configuration, same eval split."""
    path = out / "result.json"
    if not path.is_file():
        return False
    done = json.loads(path.read_text())
    return done.get("config") == config.to_dict() and done.get("eval_csv") == str(eval_csv)


def arm_config(plan: ExperimentPlan, arm: str, width: int) -> RLConfig:
    overrides = dict(ARMS[arm], width=width, seed=plan.seed)
    lr = (plan.lr or {}).get(overrides["method"])
    if lr is not None:
        overrides["lr"] = lr
    return replace(plan.base, **overrides)


def run_experiment(plan: ExperimentPlan, log=print) -> dict:
    from learner.rl.plots import read_diagnostics

    splits, counts = split_training_users(
        plan.train_csv, plan.data, plan.out / "splits", plan.rl_share, plan.tune_share, plan.seed
    )
    log(f"users split: {counts} rows (sft / rl / tune)")
    eval_csv = plan.eval_csv or splits["tune"]
    sft = ensure_sft(plan, splits["sft"])
    spawn = multiprocessing.get_context("spawn")  # a fresh process per arm: its peak RSS is its own
    runs: dict[int, dict[str, dict]] = {}
    for width in plan.widths:
        runs[width] = {}
        for arm in plan.arms:
            config = arm_config(plan, arm, width)
            out = plan.out / f"W{width}" / arm
            if _finished(out, config, eval_csv):
                log(f"W={width} {arm}: already finished with this configuration, reusing {out}")
            else:
                log(f"W={width} {arm}: lr {config.lr}, {config.steps} steps x {config.contexts_per_step} contexts")
                args = (plan.data, sft, splits["rl"], eval_csv, config, out, plan.threads, plan.progress)
                child = spawn.Process(target=_run_arm, args=(args,))
                child.start()
                child.join()
                if child.exitcode != 0:
                    raise RuntimeError(f"arm {arm} at W={width} failed (exit code {child.exitcode}); see the log above")
            result = json.loads((out / "result.json").read_text())
            result["diagnostics"] = read_diagnostics(out / "diagnostics.jsonl")
            result["ranks"] = json.loads((out / "eval_ranks.json").read_text())
            runs[width][arm] = result
    report = build_report(plan, runs, counts, eval_csv)
    write_report(plan.out, report, runs)
    return report
