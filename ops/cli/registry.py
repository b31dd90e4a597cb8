"""``recast registry``: register checkpoints and choose the one the service runs (it hot-swaps to it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ops.cli.console import database, fail

registry_app = typer.Typer(
    help="The model registry in Postgres ($RECAST_DATABASE_URL): the service serves its active model."
)


def _run(action):
    """``action(conn)`` in one transaction on the registry's database; a refusal or an unreachable
    database ends the command with the reason (exit 2)."""
    from learner.registry import RegistryError

    with database("the registry's database") as engine:
        try:
            with engine.begin() as conn:
                return action(conn)
        except RegistryError as exc:
            fail(str(exc))


def _show(row) -> str:
    note = f"  ({row.reason})" if getattr(row, "reason", None) else ""
    return f"{row.version}  {row.status:<9}  {row.path}{note}"


def _actor(actor: str | None) -> str:
    import getpass

    return actor or getpass.getuser()


@registry_app.command("add")
def add(
    checkpoint: Annotated[
        Path, typer.Option(help="Checkpoint directory (every file is checked against its manifest).")
    ],
    activate: Annotated[bool, typer.Option(help="Also make it the active model.")] = False,
) -> None:
    """Register a checkpoint as a candidate (and activate it with --activate)."""
    from learner.registry import activate as make_active
    from learner.registry import register

    def action(conn):
        row = register(conn, checkpoint)
        return make_active(conn, row.version) if activate else row

    typer.echo(_show(_run(action)))


@registry_app.command("activate")
def activate_version(
    version: Annotated[str, typer.Argument(help="A registered version (see `recast registry list`).")],
    reason: Annotated[str, typer.Option(help="Why (kept in the activation trail).")] = "",
    actor: Annotated[str | None, typer.Option(help="Who (default: the current user).")] = None,
    force: Annotated[bool, typer.Option(help="Serve it even though the gate rejected it.")] = False,
) -> None:
    """Make a registered version the active one; the previous one is retired. The service swaps to it."""
    from learner.registry import activate

    typer.echo(_show(_run(lambda conn: activate(conn, version, actor=_actor(actor), reason=reason, force=force))))


@registry_app.command("history")
def history(limit: Annotated[int, typer.Option(help="How many of the latest changes.")] = 20) -> None:
    """Every change of the active model, newest first: when, what, from what, who and why."""
    from learner.registry import activations

    for a in _run(lambda conn: activations(conn, limit)):
        typer.echo(f"{a['at']:%Y-%m-%d %H:%M:%S}  {a['action']:<8}  {a['previous_version'] or '-':<12} -> "
                   f"{a['version']:<12}  {a['actor']}: {a['reason']}")  # fmt: skip


@registry_app.command("list")
def list_versions() -> None:
    """Every registered version, newest first."""
    from learner.registry import listing

    for row in _run(listing):
        typer.echo(_show(row))


def rollback(
    reason: Annotated[str, typer.Option(help="Why you roll back (kept in the activation trail).")],
    to: Annotated[str | None, typer.Option(help="The version to serve (default: the one that served before).")]
    = None,
    actor: Annotated[str | None, typer.Option(help="Who (default: the current user).")] = None,
) -> None:
    """Serve an earlier verified version again: its files are checked against the registry, it becomes active,
    and the service's registry watcher swaps to it without dropping a request."""
    from learner.registry import rollback as roll_back

    typer.echo(_show(_run(lambda conn: roll_back(conn, to=to, actor=_actor(actor), reason=reason))))


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
    app.command()(rollback)
