"""``recast registry``: register checkpoints and choose the one the service runs (it hot-swaps to it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ops.console import fail
from schemas.settings import get_settings

registry_app = typer.Typer(
    help="The model registry in Postgres ($RECAST_DATABASE_URL): the service serves its active model."
)


def _engine():
    from sqlalchemy import create_engine

    return create_engine(get_settings().database_url)


def _show(row) -> str:
    return f"{row.version}  {row.status:<9}  {row.path}"


@registry_app.command("add")
def add(
    checkpoint: Annotated[
        Path, typer.Option(help="Checkpoint directory (every file is checked against its manifest).")
    ],
    activate: Annotated[bool, typer.Option(help="Also make it the active model.")] = False,
) -> None:
    """Register a checkpoint as a candidate (and activate it with --activate)."""
    from learner.registry import RegistryError, register
    from learner.registry import activate as make_active

    engine = _engine()
    try:
        with engine.begin() as conn:
            row = register(conn, checkpoint)
            if activate:
                row = make_active(conn, row.version)
    except RegistryError as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    typer.echo(_show(row))


@registry_app.command("activate")
def activate_version(
    version: Annotated[str, typer.Argument(help="A registered version (see `recast registry list`).")],
) -> None:
    """Make a registered version the active one (an older one: a rollback); the previous one is retired."""
    from learner.registry import RegistryError, activate

    engine = _engine()
    try:
        with engine.begin() as conn:
            row = activate(conn, version)
    except RegistryError as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    typer.echo(_show(row))


@registry_app.command("list")
def list_versions() -> None:
    """Every registered version, newest first."""
    from learner.registry import listing

    engine = _engine()
    try:
        with engine.connect() as conn:
            rows = listing(conn)
    finally:
        engine.dispose()
    for row in rows:
        typer.echo(_show(row))


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
