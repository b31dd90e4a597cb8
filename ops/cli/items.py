"""``recast items``: retire items from the catalog, and list the catalog's versions (Postgres, $RECAST_DATABASE_URL).

A retirement is a new catalog version. Running services serve it on their next look at the ledger
(``RECAST_CATALOG_POLL_S``); ``POST /v1/admin/items/retire`` serves it on the answering service at once.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ops.cli.console import database, fail

items_app = typer.Typer(help="The catalog's versions in Postgres ($RECAST_DATABASE_URL): retire items, list versions.")


@items_app.command("retire")
def retire(
    item_ids: Annotated[list[str], typer.Argument(help="The item ids to retire.", show_default=False)],
    reason: Annotated[str, typer.Option(help="retired | out_of_stock (both are final).")] = "retired",
    note: Annotated[str, typer.Option(help="Why (kept with the catalog version).")] = "",
    actor: Annotated[str | None, typer.Option(help="Who (default: the current user).")] = None,
) -> None:
    """Retire items in a new catalog version. Running services stop serving them within RECAST_CATALOG_POLL_S."""
    import getpass

    from recast.catalog_version import CatalogVersionError
    from recast.dataset import DatasetError, load_catalog
    from schemas.settings import get_settings
    from serving.catalog import CatalogConflict, record_retirement

    settings = get_settings()
    try:
        catalog = load_catalog(settings.data_dir)
    except DatasetError as exc:
        fail(str(exc))
    with database("the catalog's database") as engine:
        try:
            with engine.begin() as conn:
                done, _ = record_retirement(conn, catalog, item_ids, reason, actor or getpass.getuser(), note)
        except (CatalogVersionError, CatalogConflict) as exc:
            fail(f"nothing was retired: {exc}")
    if done.retired:
        typer.echo(f"catalog version {done.version}: retired {len(done.retired)} item(s) ({reason}): "
                   f"{' '.join(done.retired)}")  # fmt: skip
    if done.already:
        typer.echo(f"already retired (unchanged): {' '.join(done.already)}")
    typer.echo(f"services stop serving them within RECAST_CATALOG_POLL_S ({settings.catalog_poll_s:g} s)")


@items_app.command("versions")
def versions(limit: Annotated[int, typer.Option(help="How many of the latest versions.")] = 20) -> None:
    """The catalog's versions, newest first: number, parent, when, items, retired, digest, who and why."""
    from schemas.catalog import versions as latest

    with database("the catalog's database") as engine, engine.connect() as conn:
        rows = latest(conn, limit)
    for v in rows:
        typer.echo(f"{v.version:<5} {v.parent or '-':<5} {v.created_at:%Y-%m-%d %H:%M:%S}  {v.items:>6} items  "
                   f"{v.retired:>5} retired  {v.digest[:12]}  {v.actor}: {v.note}")  # fmt: skip


def register(app: typer.Typer) -> None:
    app.add_typer(items_app, name="items")
