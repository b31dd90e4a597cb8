"""``recast worker``, ``recast beat``, ``recast refresh``, ``recast runs``: the learner's side of the loop.

One command group of ``ops/cli``; :func:`register` adds them to the app. The worker and beat are
Celery's own (``celery -A learner.celery_app worker|beat`` is the same thing); these commands only
fix the options this project relies on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ops.cli.console import database, fail, setup
from schemas.settings import get_settings


def worker(
    name: Annotated[str, typer.Option(help="Node name (several workers on one host need distinct names).")] = (
        "learner@%h"
    ),
    concurrency: Annotated[int, typer.Option(help="Tasks run at once; a refresh uses every core it gets.")] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a Celery worker for the learner's tasks (the nightly refresh) on $RECAST_REDIS_URL."""
    from learner.celery_app import QUEUE, app

    setup()
    app.worker_main(["worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}", "--pool=prefork",
                     f"--hostname={name}", f"--queues={QUEUE}", "--without-gossip", "--without-mingle"])  # fmt: skip


def beat(
    schedule_file: Annotated[
        Path | None,
        typer.Option("--schedule-file", help="Beat's state (default: $RECAST_RUN_DIR/celerybeat-schedule)."),
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run Celery beat: it sends refresh_policy on $RECAST_REFRESH_SCHEDULE (nightly at 03:00 UTC by default)."""
    from learner.celery_app import app

    setup()
    settings = get_settings()
    path = schedule_file or settings.run_dir / "celerybeat-schedule"
    path.parent.mkdir(parents=True, exist_ok=True)
    app.start(["beat", f"--loglevel={loglevel}", f"--schedule={path}", "--pidfile="])


def refresh(
    enqueue: Annotated[bool, typer.Option(help="Send it to the Celery workers instead of running it here.")] = False,
    method: Annotated[str | None, typer.Option(help="RL step: recast | grpo | none (default $RECAST_REFRESH_METHOD).")]
    = None,
    wait_s: Annotated[float, typer.Option(help="With --enqueue: how long to wait for the result.")] = 1800.0,
    progress: Annotated[bool, typer.Option(help="Show progress bars (when run here).")] = True,
) -> None:
    """Run one refresh now: read the new closed reward groups, learn a child of the served model, gate it,
    publish or reject it. Prints the run's outcome as JSON (`recast runs` lists every attempt)."""
    overrides = {"method": method} if method else {}
    if enqueue:
        from learner.tasks import refresh_policy

        result = refresh_policy.apply_async(kwargs={"trigger": "manual", **overrides})
        typer.echo(json.dumps(result.get(timeout=wait_s), indent=2))
        return
    from dataclasses import asdict

    from learner.refresh.run import refresh as run_refresh

    settings = get_settings()
    setup(settings.torch_threads)
    try:
        outcome = run_refresh(settings, trigger="manual", progress=progress, **overrides)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(json.dumps(asdict(outcome), indent=2))


def runs(
    limit: Annotated[int, typer.Option(help="How many of the latest attempts to list.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per run instead of a table.")] = False,
) -> None:
    """The latest learner runs, newest first: status, the gate's decision and reason, versions, window, counts."""
    from sqlalchemy import select

    from schemas.tables import TrainingRun

    t = TrainingRun.__table__.c
    with database() as engine, engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(TrainingRun.__table__).order_by(t.id.desc())
                                                       .limit(limit))]  # fmt: skip
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, default=str))
        return
    typer.echo(f"{'id':>5} {'status':<9} {'decision':<9} {'trigger':<7} {'base':<12} {'result':<12} "
               f"{'groups':>6} {'secs':>6}  reason")  # fmt: skip
    for r in rows:
        secs = f"{(r['finished_at'] - r['started_at']).total_seconds():.0f}" if r["finished_at"] else ""
        why = (r["reason"] or r["error"] or "")[:100]
        typer.echo(f"{r['id']:>5} {r['status']:<9} {r['decision'] or '-':<9} {r['trigger']:<7} "
                   f"{r['base_version'] or '-':<12} {r['result_version'] or '-':<12} {r['groups_used']:>6} "
                   f"{secs:>6}  {why}")  # fmt: skip


def register(app: typer.Typer) -> None:
    for command in (worker, beat, refresh, runs):
        app.command()(command)
