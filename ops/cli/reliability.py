"""``recast chaos``: the closed loop under faults (``ops/sim/chaos.py``), with its checks and figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ops.cli.console import fail, setup
from schemas.settings import get_settings


def chaos(
    checkpoint: Annotated[Path, typer.Option(help="The initial model (registered and activated first).")],
    split_file: Annotated[Path, typer.Option("--split", help="Shoppers: a split's held-out rows, cycled.")],
    train: Annotated[Path | None, typer.Option(help="The initial model's training rows (the refresh's replay).")]
    = None,
    gate: Annotated[Path | None, typer.Option(help="The gate's fixed offline split.")] = None,
    data: Annotated[Path | None, typer.Option(help="Data set directory (default: $RECAST_DATA_DIR).")] = None,
    rate: Annotated[float, typer.Option(help="Shopper visits per second, steady.")] = 4.0,
    phase_s: Annotated[float, typer.Option(help="Seconds of traffic before each fault.")] = 20.0,
    outage_s: Annotated[float, typer.Option(help="How long the broker and Postgres stay down.")] = 5.0,
    run_dir: Annotated[Path, typer.Option(help="Where the stack, logs and chaos.json go.")] = Path("runs/chaos"),
) -> None:
    """Kill and restart, one at a time, the API, an ingest worker, the Celery worker during a refresh, the broker
    and Postgres under steady traffic; then check that nothing acknowledged was lost or counted twice, that every
    served list's impression was recorded, and that every model that served was registered and verified.
    Exits 1 if any check fails."""
    from ops.sim.chaos_run import passed, report, run_chaos
    from ops.sim.shoppers import Visit
    from recast.dataset import DatasetError, load_catalog, load_interactions

    setup(log_file=run_dir / "logs" / "chaos.log")
    data = data or get_settings().data_dir
    try:
        rows = load_interactions(split_file, load_catalog(data))
    except DatasetError as exc:
        fail(str(exc))
    visits = [Visit(r.user_id, list(r.history), r.target) for r in rows]
    result = run_chaos(checkpoint.resolve(), visits, run_dir.resolve(), data.resolve(), train, gate, rate=rate,
                       phase_s=phase_s, outage_s=outage_s, say=lambda m: typer.echo(m, err=True))  # fmt: skip
    (run_dir / "chaos.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    typer.echo(report(result))
    if not passed(result):
        typer.secho("FAIL: a check did not hold (see above and chaos.json)", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)
    typer.echo("PASS: nothing lost, nothing counted twice, every served model registered and verified")


def register(app: typer.Typer) -> None:
    app.command()(chaos)
