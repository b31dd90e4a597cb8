"""``recast up`` / ``recast down`` / ``recast status``: the embedded stack from the command line.

One command group of ``ops/cli``; :func:`register` adds these to the app.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from schemas.settings import get_settings

DirOpt = Annotated[
    Path | None,
    typer.Option("--dir", help="Folder of the stack's data, logs and state.json (default: $RECAST_RUN_DIR/stack)."),
]


def _root(directory: Path | None) -> Path:
    return directory or get_settings().run_dir / "stack"


def up(
    directory: DirOpt = None,
    celery: Annotated[
        bool, typer.Option(help="Also start the learner's Celery worker and beat (the nightly refresh), with this "
                           "shell's RECAST_* settings.")
    ] = False,
) -> None:
    """Start Postgres, Kafka (Tansu) and Redis on 127.0.0.1, create topics, migrate, print URLs.

    Prints the RECAST_* variables that point a process at the stack, and how long it took.
    """
    from ops.stack import status as stack_status
    from ops.stack import up as stack_up
    from ops.stack.servers import StackError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    settings = get_settings()
    wanted = {"postgres", "kafka", "redis"} | ({"worker", "beat"} if celery else set())
    if (running := stack_status(_root(directory))) and all(running.get(name, False) for name in wanted):
        typer.echo(f"already running under {_root(directory)}; `recast status` lists it")
        raise typer.Exit(code=0)
    try:
        state = stack_up(_root(directory), [settings.impressions_topic, settings.outcomes_topic],
                         settings.topic_partitions, celery=celery)  # fmt: skip
    except StackError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None
    for s in state.services.values():
        typer.echo(f"{s.name:<9} {s.url:<55} pid {s.pid:<7} ready after {s.ready_s:.2f} s")
    typer.echo(f"topics    {', '.join(state.topics)}")
    typer.echo(f"all ready in {state.ready_s:.2f} s (state: {Path(state.root) / 'state.json'})")
    typer.echo("# point a process at this stack:")
    for key, value in state.env().items():
        typer.echo(f"export {key}={value}")


def status(directory: DirOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Say which services of the stack run; exits 1 unless all do."""
    from ops.stack import StackState
    from ops.stack import status as stack_status

    root = _root(directory)
    running = stack_status(root)
    state = StackState.load(root.resolve())
    if as_json:
        services = {n: {**vars(s), "running": running[n]} for n, s in state.services.items()} if state else {}
        typer.echo(json.dumps({"root": str(root), "services": services}, indent=2))
    elif running is None:
        typer.echo(f"no stack under {root} (start one with `recast up`)")
    else:
        for name, ok in running.items():
            s = state.services[name]
            typer.echo(f"{name:<9} {'running' if ok else 'DOWN':<8} {s.url:<55} pid {s.pid}")
    if not running or not all(running.values()):
        raise typer.Exit(code=1)


def down(directory: DirOpt = None) -> None:
    """Stop the stack. Postgres keeps its data under the stack folder; the broker's topics are lost."""
    from ops.stack import down as stack_down

    stopped = stack_down(_root(directory))
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else f"nothing running under {_root(directory)}")


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(status)
    app.command()(down)
