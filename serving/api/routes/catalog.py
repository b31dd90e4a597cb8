"""Catalog routes (admin token): the catalog version being served, retiring items from it, and adding items.

Adding items is a new catalog version too. This service then reloads the checkpoint it serves over the grown
catalog (a swap), so the items can be returned when the call returns; other replicas serve them from their next
swap. A model needs no retraining for them: an item is its code (see ``serving.served_model.with_added_items``).

A retirement is recorded in Postgres as a new catalog version, and this service serves it before the call
returns: no list built afterwards holds the items, in either engine, with no model swap. Other replicas
serve it on their next look at the ledger (``RECAST_CATALOG_POLL_S``).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from recast.catalog import CatalogError
from recast.catalog_version import RETIRE_REASONS, CatalogVersionError
from schemas.api import AddItemsRequest, ItemsAdded
from schemas.events import Id, Text
from serving.api.deps import Admin, ServicesDep
from serving.api.responses import GUARDED, errors
from serving.catalog import CatalogConflict, ItemsExist

router = APIRouter(prefix="/v1/admin", tags=["catalog"], dependencies=[Admin])
MAX_RETIRE = 1000
SHOWN_UNKNOWN = 10


class RetireRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_ids: list[Id] = Field(min_length=1, max_length=MAX_RETIRE, description="The items to retire.")
    reason: Literal[RETIRE_REASONS] = Field("retired", description="retired | out_of_stock; both are final.")
    note: Text = Field("", max_length=2000, description="Why (kept with the catalog version).")
    actor: Text = Field("admin-api", min_length=1, max_length=128, description="Who asks (kept with the version).")


class Retired(BaseModel):
    catalog_version: int = Field(description="The catalog version that holds the retirement, now served.")
    digest: str = Field(description="sha256 of that version's (item, code, state) set.")
    retired: list[str] = Field(description="Items this call retired.")
    already_retired: list[str] = Field(description="Items that were retired before (unchanged).")


class CatalogStatus(BaseModel):
    version: int | None = Field(description="The catalog version served (None: none recorded yet).")
    digest: str
    items: int
    retired: int
    source: str = Field(description="Where the served state came from: postgres, the data set, or a checkpoint.")
    read_at: float | None = Field(description="Unix time of the last good look at Postgres (None: never).")
    error: str | None = Field(description="Why the last look failed, or why its version was not served.")


def _require_versions(services, what: str) -> None:
    if not services.settings.catalog_versions:
        raise HTTPException(status.HTTP_409_CONFLICT, "this service keeps no catalog versions "
                            f"(RECAST_CATALOG_VERSIONS=false); {what} where they are kept")  # fmt: skip


async def _write(services, call, *args):
    """Run one ledger write off the event loop; its refusals become the 4xx/503 the routes declare."""
    from sqlalchemy.exc import OperationalError

    try:
        return await asyncio.to_thread(call, services.database(), *args)
    except ItemsExist as exc:
        detail = {"message": str(exc), "existing_item_ids": exc.ids[:10]}
        raise HTTPException(status.HTTP_409_CONFLICT, detail) from None
    except (CatalogVersionError, CatalogError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except CatalogConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except OperationalError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the catalog's database is unreachable: {exc.orig}",
                            {"Retry-After": "5"}) from None  # fmt: skip


def catalog_status(services) -> CatalogStatus:
    live = services.live
    current = live.current
    return CatalogStatus(version=current.version, digest=current.state.digest, items=len(current.state.codes),
                         retired=len(current.retired_positions), source=current.source, read_at=live.read_at,
                         error=live.error)  # fmt: skip


@router.get("/catalog", response_model=CatalogStatus, responses=errors(*GUARDED), summary="The catalog being served")
async def catalog(services: ServicesDep) -> CatalogStatus:
    return catalog_status(services)


@router.post(
    "/items/retire",
    response_model=Retired,
    responses=errors(*GUARDED, 400, 409, 422, 503, s422="Invalid body, or unknown item ids (listed)",
                     s409="Postgres holds a catalog this service cannot serve, or the service keeps no catalog "
                     "versions (RECAST_CATALOG_VERSIONS=false); nothing changed",
                     s503="The catalog's database is unreachable; nothing changed"),
    summary="Retire items: a new catalog version, served before the call returns (no model swap)",
)  # fmt: skip
async def retire(body: RetireRequest, services: ServicesDep) -> Retired:
    _require_versions(services, "retire items")
    # The live catalog: an item added online can be retired before a swap serves it.
    unknown = list(dict.fromkeys(services.live.current.catalog.unknown(body.item_ids)))
    if unknown:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            {"message": f"{len(unknown)} unknown item id(s); nothing was retired",
                             "unknown_item_ids": [i[:64] for i in unknown[:SHOWN_UNKNOWN]]})  # fmt: skip
    done = await _write(services, services.live.retire, body.item_ids, body.reason, body.actor, body.note)
    return Retired(catalog_version=done.version, digest=done.digest, retired=done.retired, already_retired=done.already)


@router.post(
    "/items",
    response_model=ItemsAdded,
    responses=errors(*GUARDED, 400, 409, 422, 503, s422="Invalid items (each wrong field listed), or no code can "
                     "be given", s409="An item id the catalog already holds (listed), Postgres holds a catalog this "
                     "service cannot serve, or it keeps no catalog versions; nothing changed",
                     s503="The catalog's database is unreachable; nothing changed"),
    summary="Add items: codes in the served code space, a new catalog version, and the served model reloaded over it",
)  # fmt: skip
async def add_items(body: AddItemsRequest, services: ServicesDep) -> ItemsAdded:
    _require_versions(services, "add items")
    entries = {item.item_id: item.entry() for item in body.items}
    done = await _write(services, services.live.add, entries, body.actor, body.note)
    model, error = services.holder.get(), None
    if model is not None:
        result = await asyncio.to_thread(services.holder.swap, model.path, model.manifest_sha256)
        error = result.error
    served = model is not None and error is None
    return ItemsAdded(catalog_version=done.version, digest=done.digest, codes=done.codes, served=served,
                      model_version=services.holder.get().version if model else None, error=error)  # fmt: skip
