"""``recast rl`` (one RL run) and ``recast experiment`` (ReCast vs the baseline).

One command group of ``ops/cli``; :func:`register` adds them to the app.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ops.cli.console import fail, setup
from schemas.settings import get_settings

DataOpt = Annotated[Path | None, typer.Option("--data", help="Data set directory (default: $RECAST_DATA_DIR).")]
Method = Annotated[
    str,
    typer.Option(help="Learning signal (recast.signals.spec.METHODS): 'recast' (the chosen form), 'recast-literal' "
                 "(issue 4's reading) or 'grpo' (the group-normalised baseline)."),
]  # fmt: skip
Steps = Annotated[int | None, typer.Option(help="RL steps (default: the preset's, 80).")]
Contexts = Annotated[int | None, typer.Option("--contexts", help="Contexts rolled out per step (default 64).")]
Lr = Annotated[float | None, typer.Option(help="AdamW learning rate (default: the preset's).")]
Preset = Annotated[str, typer.Option(help="'tiny' (seconds, tests) or 'default'.")]


def rl(
    sft: Annotated[Path, typer.Option(help="SFT checkpoint directory to start from.")],
    train_file: Annotated[
        Path, typer.Option("--train", help="Interaction CSV whose windows are the RL contexts (users SFT never saw).")
    ],
    eval_file: Annotated[Path, typer.Option("--eval", help="Interaction CSV for the periodic Pass@1/HR@10.")],
    out: Annotated[Path, typer.Option(help="Run directory: diagnostics.jsonl/png, repairs.jsonl, checkpoint/.")],
    data: DataOpt = None,
    method: Method = "recast",
    width: Annotated[int | None, typer.Option(help="Search width W (default 16).")] = None,
    steps: Steps = None,
    contexts: Contexts = None,
    lr: Lr = None,
    repair: Annotated[bool | None, typer.Option(help="Repair all-zero groups with the known positive.")] = None,
    contrast_loss: Annotated[
        str | None, typer.Option(help="ReCast's pair loss: 'pg' (literal +-1), 'boundary' or 'logistic'.")
    ] = None,
    negative_weight: Annotated[
        float | None, typer.Option(help="ReCast: the hardest negative's advantage is minus this (0: positive only).")
    ] = None,
    signal: Annotated[
        str | None,
        typer.Option(help="More SignalSpec overrides as JSON, e.g. '{\"hits\": \"above\", \"anchor_cap\": 0.25}'."),
    ] = None,
    replay_file: Annotated[
        Path | None, typer.Option("--replay", help="Interaction CSV of older windows for a signal that replays them.")
    ] = None,
    kl_beta: Annotated[float | None, typer.Option(help="Weight of the k3 KL penalty to the SFT reference.")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Steps between evaluations.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the context order.")] = None,
    preset: Preset = "default",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run RL from an SFT checkpoint with one learning-signal strategy.

    Writes diagnostics.jsonl (a line per step: all-zero, single-hit, repaired and
    unrepairable ratios, mean reward, budget, actor-update time, memory, periodic
    eval), diagnostics.png, repairs.jsonl (every repair decision) and checkpoint/.
    """
    from learner.rl.config import preset as rl_preset
    from learner.rl.plots import plot_run
    from learner.rl.trainer import train_rl
    from recast.checkpoint import CheckpointError
    from recast.dataset import DatasetError

    settings = get_settings()
    setup(settings.torch_threads)
    try:
        config = rl_preset(preset, method=method, width=width, steps=steps, contexts_per_step=contexts, lr=lr,
                           repair=repair, contrast_loss=contrast_loss, negative_weight=negative_weight,
                           kl_beta=kl_beta, eval_every=eval_every, seed=seed,
                           signal=json.loads(signal) if signal else None)  # fmt: skip
        result = train_rl(data or settings.data_dir, sft, train_file, eval_file, config, out, progress=progress,
                          replay_csv=replay_file)  # fmt: skip
    except (DatasetError, CheckpointError, ValueError) as exc:
        fail(str(exc))
    plot_run(result.history, out / "diagnostics.png", title=f"{config.method} W={config.width}")
    typer.echo(json.dumps({"checkpoint": str(result.checkpoint), "start": result.start_eval,
                           "final": result.final_eval}, indent=2))  # fmt: skip


def _lrs(text: str | None) -> dict[str, float]:
    """'grpo=1e-4,recast=3e-5' -> {'grpo': 1e-4, 'recast': 3e-5}."""
    if not text:
        return {}
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"--lr takes arm=rate pairs separated by commas, got {text!r}")
    return {arm.strip(): float(rate) for arm, rate in pairs}


def experiment(
    train_file: Annotated[Path, typer.Option("--train", help="The training file of 'recast split' (train.csv).")],
    out: Annotated[Path, typer.Option(help="Experiment directory: splits/, sft/, W<w>/<arm>/s<seed>/, report.*")],
    eval_file: Annotated[
        Path | None,
        typer.Option("--eval", help="Held-out CSV for the final figures (default: the tune split, for tuning)."),
    ] = None,
    data: DataOpt = None,
    widths: Annotated[str, typer.Option(help="Comma-separated search widths.")] = "16",
    arms: Annotated[
        str,
        typer.Option(help="Comma-separated arms (ops.experiments.rl.ARMS); with grpo or grpo-lean among them the "
                     "report adds the differences and ratios against it."),
    ] = "grpo,recast,recast-literal",
    seeds: Annotated[str, typer.Option(help="Comma-separated RL seeds (context order, replay draw).")] = "0",
    steps: Steps = None,
    contexts: Contexts = None,
    lr: Annotated[
        str | None,
        typer.Option(help="Per-arm learning rates 'arm=rate,...' over the tuned ones (ops.experiments.rl.TUNED_LR)."),
    ] = None,
    lr_grid: Annotated[
        str | None,
        typer.Option(help="Tuning: run every arm at each of these comma-separated rates and pick one per arm."),
    ] = None,
    eval_every: Annotated[int | None, typer.Option(help="Steps between evaluations.")] = None,
    eval_rows: Annotated[
        int | None, typer.Option(help="Score only the first N eval entries (the same for every arm).")
    ] = None,
    probe_every: Annotated[int | None, typer.Option(help="Steps between after-update probes (0: never).")] = None,
    sft_preset: Annotated[str, typer.Option(help="SFT preset of the shared start (the learning rates in "
                                            "ops.experiments.rl were tuned from long-context).")] = "long-context",
    preset: Preset = "default",
    seed: Annotated[int, typer.Option(help="Seed of the user split and the SFT start (one start for every run).")] = 0,
    jobs: Annotated[int, typer.Option(help="Runs at once, each its own process.")] = 1,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """ReCast variants vs the group-normalised baseline from one SFT start, same data and rollout
    budget, at each width and seed; writes report.json, report.md and report.png."""
    from learner.rl.config import preset as rl_preset
    from ops.experiments.rl import ExperimentPlan, run_experiment
    from recast.checkpoint import CheckpointError
    from recast.dataset import DatasetError

    settings = get_settings()
    setup(settings.torch_threads)
    try:
        base = rl_preset(preset, steps=steps, contexts_per_step=contexts, eval_every=eval_every,
                         eval_rows=eval_rows, probe_every=probe_every)  # fmt: skip
        plan = ExperimentPlan(
            data=data or settings.data_dir,
            train_csv=train_file,
            eval_csv=eval_file,
            out=out,
            widths=tuple(int(w) for w in widths.split(",")),
            arms=tuple(a.strip() for a in arms.split(",")),
            seeds=tuple(int(s) for s in seeds.split(",")),
            base=base,
            lr=_lrs(lr),
            lr_grid=tuple(float(x) for x in lr_grid.split(",")) if lr_grid else (),
            sft_preset=sft_preset,
            seed=seed,
            threads=settings.torch_threads,
            jobs=jobs,
            progress=progress,
        )
        report = run_experiment(plan, log=lambda m: typer.echo(m, err=True))
    except (DatasetError, CheckpointError, ValueError) as exc:
        fail(str(exc))
    from ops.experiments.report import markdown

    typer.echo(markdown(report))


def register(app: typer.Typer) -> None:
    app.command()(rl)
    app.command()(experiment)
