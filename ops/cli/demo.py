"""``recast demo``: the online loop on the embedded stack (serve, simulate, ingest, report); see :mod:`ops.sim.demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ops.cli.console import fail, setup
from schemas.settings import get_settings


def demo(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint to serve.")],
    split_file: Annotated[Path, typer.Option("--split", help="Split CSV whose rows become shoppers' visits.")],
    data: Annotated[Path | None, typer.Option(help="Data set folder (default: $RECAST_DATA_DIR).")] = None,
    users: Annotated[int, typer.Option(help="Visits to simulate (the split's first rows).")] = 300,
    run_dir: Annotated[Path, typer.Option(help="Where the stack, logs and spool go.")] = Path("runs/demo"),
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Serve the checkpoint, send the split's users through it as shoppers, ingest what they did into reward
    groups and print the groups per segment. The embedded stack stays up afterwards (`recast down --dir
    <run-dir>/stack` stops it)."""
    from tqdm.auto import tqdm

    from ops.sim.demo import run_demo
    from ops.sim.shoppers import Visit
    from recast.dataset import DatasetError, load_catalog, load_interactions

    setup()
    data = data or get_settings().data_dir
    if users < 1:
        fail("--users must be >= 1")
    try:
        rows = load_interactions(split_file, load_catalog(data))[:users]
    except DatasetError as exc:
        fail(str(exc))
    visits = [Visit(r.user_id, list(r.history), r.target) for r in rows]
    with tqdm(total=len(visits), desc="shoppers", unit="visit", disable=not progress) as bar:
        result = run_demo(checkpoint.resolve(), visits, run_dir.resolve(), data.resolve(), lambda: bar.update())
    sim, ing = result.simulation.summary(), result.ingest
    typer.echo(f"stack ready in {result.stack_ready_s:.1f} s, API ready in {result.api_ready_s:.1f} s")
    typer.echo(f"visits {sim['visits']}, chosen item on the list (HR@10) {sim['hit_rate@k']:.3f}, "
               f"outcomes sent {sim['outcomes']}, errors {sim['errors'] or 'none'}")  # fmt: skip
    typer.echo(f"ingested {ing['messages']} events ({ing['impressions']} impressions, {ing['outcomes']} outcomes), "
               f"{ing['credited']} outcomes credited to a served list, {ing['dead_letters']} dead letters")  # fmt: skip
    typer.echo(f"{'segment':<12}{'groups':>8}{'all-zero':>10}{'rewarded items/group':>22}{'organic positives':>19}")
    for g in result.groups:
        typer.echo(f"{g['segment']:<12}{g['groups']:>8}{float(g['all_zero']):>10.2f}"
                   f"{float(g['rewarded_items']):>22.2f}{int(g['organic'] or 0):>19}")  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command()(demo)
