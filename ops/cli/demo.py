"""``recast demo``: the closed loop on the embedded stack, day by day (see :mod:`ops.sim.loop`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ops.cli.console import fail, setup
from schemas.settings import get_settings


def demo(
    checkpoint: Annotated[Path, typer.Option(help="The initial model (registered, activated, served on day 1).")],
    split_file: Annotated[
        Path, typer.Option("--split", help="Shoppers: a split CSV of users the initial model never saw.")
    ],
    train_file: Annotated[
        Path | None, typer.Option("--train", help="The initial model's training CSV (the refresh's replay pool).")
    ] = None,
    gate_file: Annotated[
        Path | None, typer.Option("--gate", help="The gate's fixed offline split (users nobody trains on).")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Data set folder (default: $RECAST_DATA_DIR).")] = None,
    days: Annotated[int, typer.Option(help="Simulated days, each followed by a night's refresh.")] = 4,
    visits: Annotated[int | None, typer.Option(help="Visits in all (the split's first rows; default: all).")] = None,
    method: Annotated[
        str, typer.Option(help="The refresh's RL step: recast, grpo or none (SFT and scorers only); 'off': no "
                          "refresh at all, the initial model serves every day.")
    ] = "recast",
    period_s: Annotated[int, typer.Option(help="Wall-clock seconds of one simulated day.")] = 30,
    seed: Annotated[int, typer.Option(help="Seed of the shoppers' choices.")] = 0,
    run_dir: Annotated[Path, typer.Option(help="Stack, models, logs, results and plot go here.")] = Path("runs/demo"),
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run the closed loop: serve shoppers who were never trained on, ingest what they did into reward groups,
    refresh the policy each night (Celery beat -> refresh -> gate -> registry -> hot-swap), and print one
    row per day: the model that served, served HR@10 from the shoppers' actions, the all-zero and repaired
    shares, and the night's decision with its reason. Writes loop.json, loop.png and the audit report of its
    refreshes (audit.html) into --run-dir, prints where, and stops everything it started."""
    from tqdm.auto import tqdm

    from ops.sim.loop import LoopConfig, run_loop, split_days
    from ops.sim.loop_report import day_table, plot
    from ops.sim.shoppers import Visit
    from recast.dataset import DatasetError, load_catalog, load_interactions

    run_dir = run_dir.resolve()
    setup(log_file=run_dir / "logs" / "demo.log")
    data = (data or get_settings().data_dir).resolve()
    if method not in ("recast", "grpo", "none", "off"):
        fail(f"--method must be recast, grpo, none or off, not {method!r}")
    try:
        config = LoopConfig(days=days, period_s=period_s, method=None if method == "off" else method, seed=seed)
        rows = load_interactions(split_file, load_catalog(data))[:visits]
    except (DatasetError, ValueError) as exc:
        fail(str(exc))
    plan = split_days([Visit(r.user_id, list(r.history), r.target) for r in rows], days)
    with tqdm(total=len(rows), desc="shoppers", unit="visit", disable=not progress) as bar:
        result = run_loop(checkpoint.resolve(), plan, run_dir, data, config,
                          train_csv=train_file.resolve() if train_file else None,
                          gate_csv=gate_file.resolve() if gate_file else None,
                          on_visit=bar.update, say=lambda m: bar.write(m),
                          audit_html=run_dir / "audit.html")  # fmt: skip
    (run_dir / "loop.json").write_text(result.to_json() + "\n")
    png = plot(result, run_dir / "loop.png", f"the closed loop, refresh {method}")
    typer.echo(f"stack ready in {result.stack_ready_s:.1f} s, API ready in {result.api_ready_s:.1f} s, "
               f"{len(result.days)} days in {result.seconds / 60:.1f} min")  # fmt: skip
    typer.echo(day_table(result))
    typer.echo(f"results: {run_dir / 'loop.json'}  plot: {png}")
    if result.audit is not None:
        from ops.audit.table import run_table

        last = result.audit["last"]
        typer.echo(f"\naudit of the last refresh (run {last['run_id']}; `recast audit --run ID` for another):")
        typer.echo(run_table(last, last["segments"]))
        flagged = "; ".join(f"run {run}: {', '.join(f)}" for run, f in result.audit["flagged"].items() if f) or "none"
        typer.echo(f"audit report: {result.audit['path']} (runs {result.audit['runs'][0]}-{result.audit['runs'][-1]};"
                   f" flagged: {flagged})")  # fmt: skip
    errors = {k: v for d in result.days for k, v in d.errors.items()}
    if errors:
        fail(f"some visits failed: {json.dumps(errors)}")


def register(app: typer.Typer) -> None:
    app.command()(demo)
