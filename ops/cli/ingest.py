"""``recast ingest``: the ingestion worker from the command line (Kafka -> reward groups in Postgres).

One command group of ``ops/cli``; :func:`register` adds it to the app.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ops.cli.console import fail, setup_service
from schemas.settings import get_settings


def ingest(
    group: Annotated[str, typer.Option(help="Kafka consumer group id.")] = "recast-ingest",
    batch_size: Annotated[int, typer.Option(help="Messages per poll, written in one transaction.")] = 2000,
    lateness_s: Annotated[int, typer.Option(help="Event-time seconds late outcomes still count.")] = 300,
    max_events: Annotated[int | None, typer.Option(help="Stop after this many messages.")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    idle_exit_s: Annotated[float | None, typer.Option(help="Stop after this long with nothing to read.")] = None,
    idle_advance_s: Annotated[
        float, typer.Option(help="Caught up and idle this long: event time is taken to have reached the wall clock, "
                            "so groups whose windows ended close (0: only events move it).")
    ] = 30.0,
    alive: Annotated[Path, typer.Option(help="File touched after every committed batch (the health check).")] = Path(
        "/tmp/recast-ingest.alive"
    ),
    check_items: Annotated[bool, typer.Option(help="Dead-letter outcomes on items outside the catalog of "
                                              "$RECAST_DATA_DIR, as the API refuses them.")] = True,  # fmt: skip
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics on this port (default: "
                                                     "$RECAST_INGEST_METRICS_PORT; 0: none).")] = None,  # fmt: skip
) -> None:
    """Consume impressions and outcomes into reward groups; prints a JSON summary when it stops.

    Offsets are committed only after the database transaction of their batch, so a crash
    at any point neither loses nor double-counts an event. Without --max-* it runs forever.
    """
    from learner.ingest.consumer import IngestConfig, known_items, run

    settings = get_settings()
    setup_service(settings)
    port = settings.ingest_metrics_port if metrics_port is None else metrics_port
    try:
        config = IngestConfig(group_id=group, batch_size=batch_size, lateness_s=lateness_s, max_events=max_events,
                              max_seconds=max_seconds, idle_exit_s=idle_exit_s, alive_path=alive,
                              idle_advance_s=idle_advance_s or None,
                              known_items=known_items(settings) if check_items else None,
                              metrics_port=port, metrics_host=settings.ingest_metrics_host)  # fmt: skip
    except ValueError as exc:
        fail(str(exc))
    stats = run(settings, config)
    typer.echo(json.dumps(stats.summary()))


def register(app: typer.Typer) -> None:
    app.command()(ingest)
