"""``recast items``: add items to the catalog, retire items from it, and list its versions (Postgres,
$RECAST_DATABASE_URL).

A retirement is a new catalog version. Running services serve it on their next look at the ledger
(``RECAST_CATALOG_POLL_S``); ``POST /v1/admin/items/retire`` serves it on the answering service at once.
Added items get codes in the served code space (``recast.sids.served``) and are served from each service's next
model swap; ``POST /v1/admin/items`` reloads the answering service's model at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ops.cli.console import database, fail

items_app = typer.Typer(help="The catalog's versions in Postgres ($RECAST_DATABASE_URL): add and retire items, list "
                        "versions.")  # fmt: skip


@items_app.command("add")
def add(
    file: Annotated[Path, typer.Argument(help="New items in the items.json format: {id: {title, description, brand, "
                                          "categories}}.", show_default=False)],  # fmt: skip
    note: Annotated[str, typer.Option(help="Why (kept with the catalog version).")] = "",
    actor: Annotated[str | None, typer.Option(help="Who (default: the current user).")] = None,
) -> None:
    """Add items in a new catalog version, each with a code the served model can decode. Services serve them from
    their next model swap (no retraining); the nightly refresh learns from their interactions."""
    import getpass

    from pydantic import ValidationError

    from recast.catalog import CatalogError
    from recast.catalog_version import CatalogVersionError
    from recast.dataset import DatasetError, load_catalog, load_item_entries, read_item_entries
    from schemas.api import AddItemsRequest
    from schemas.settings import get_settings
    from serving.catalog import CatalogConflict, record_addition

    settings = get_settings()
    try:
        raw = read_item_entries(file)
        catalog, texts = load_catalog(settings.data_dir), load_item_entries(settings.data_dir)
    except DatasetError as exc:
        fail(str(exc))
    try:
        body = AddItemsRequest(items=[{"item_id": i, **e} for i, e in raw.items()], actor=actor or getpass.getuser(),
                               note=note)  # fmt: skip
    except ValidationError as exc:
        wrong = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'items'}: {e['msg']}" for e in exc.errors())
        fail(f"{file}: nothing was added: {wrong}")
    entries = {item.item_id: item.entry() for item in body.items}
    with database("the catalog's database") as engine:
        try:
            with engine.begin() as conn:
                done, _, _ = record_addition(conn, catalog, entries, body.actor, note, texts)
        except (CatalogVersionError, CatalogConflict, CatalogError) as exc:
            fail(f"nothing was added: {exc}")
    typer.echo(f"catalog version {done.version}: added {len(done.codes)} item(s)")
    for item_id, code in done.codes.items():
        typer.echo(f"{item_id}\t{code}")
    typer.echo("services serve them from their next model swap (POST /v1/admin/model, or the nightly refresh's)")


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
