"""Admin routes (admin token): what is served, a hot-swap on demand, and a rollback through the registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from schemas.events import Text
from serving.api.deps import Admin, ServicesDep
from serving.api.responses import GUARDED, errors

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Admin])


class SwapRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Text = Field(min_length=1, max_length=4096, description="Checkpoint directory, as the service's "
                       "filesystem sees it.")  # fmt: skip
    sha256: str | None = Field(None, pattern="^[0-9a-fA-F]{64}$", description="Expected sha256 of its "
                               "manifest.json (as the registry stores).")  # fmt: skip


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(min_length=1, max_length=2000, description="Why: kept in the registry's activation trail.")
    to: Text | None = Field(None, max_length=128, description="The version to serve (default: the one before).")
    actor: Text = Field("admin-api", min_length=1, max_length=128, description="Who asks (kept in the trail).")


class RegistryStatus(BaseModel):
    version: str | None = Field(description="The registry's active version (None: none is active, or unread).")
    agrees: bool = Field(description="The served model is the registry's active one (or nothing is active).")
    reason: str | None = Field(description="Why they disagree, or why the registry could not be read.")
    read_at: float | None = Field(description="Unix time of the last successful read (None: never, or no watcher).")


class ModelStatus(BaseModel):
    version: str | None
    path: str | None
    engine: str
    load_s: float | None
    swaps: dict[str, int]
    last_swap: dict | None
    registry: RegistryStatus | None = Field(None, description="The registry's view (None: no registry watcher).")


def registry_status(services) -> RegistryStatus | None:
    watcher = services.watcher
    if watcher is None:
        return None
    view, disagreement = watcher.view, watcher.disagreement()
    return RegistryStatus(version=view.version, agrees=disagreement is None,
                          reason=disagreement or view.error, read_at=view.read_at)  # fmt: skip


def _status(services) -> ModelStatus:
    model, last = services.holder.get(), services.holder.last
    return ModelStatus(
        version=model.version if model else None, path=str(model.path) if model else None,
        engine=model.engine.name if model else services.settings.engine, load_s=model.load_s if model else None,
        swaps=dict(services.holder.swaps), last_swap=last.__dict__ if last else None,
        registry=registry_status(services),
    )  # fmt: skip


@router.get("/model", response_model=ModelStatus, responses=errors(*GUARDED), summary="The model being served")
async def model(services: ServicesDep) -> ModelStatus:
    return _status(services)


@router.post(
    "/model",
    response_model=ModelStatus,
    responses=errors(*GUARDED, 400, 409, 422, s409="The checkpoint was refused; the previous model keeps serving"),
    summary="Load a checkpoint, verify and warm it, then swap it in",
)
async def swap(body: SwapRequest, services: ServicesDep) -> ModelStatus:
    result = await asyncio.to_thread(services.holder.swap, Path(body.path), body.sha256)
    if not result.ok:
        raise HTTPException(status.HTTP_409_CONFLICT, {"message": "refused; the previous model keeps serving",
                                                        "error": result.error, "serving": result.version})  # fmt: skip
    return _status(services)


@router.post(
    "/rollback",
    response_model=ModelStatus,
    responses=errors(*GUARDED, 400, 404, 409, 422, 503, s404="No such version in the registry",
                     s409="Refused (rejected, already active, or its files fail the checks); nothing changed",
                     s503="The registry's database is unreachable"),
    summary="Serve an earlier registered version: verify, load and warm it, swap, then record it as active",
)  # fmt: skip
async def rollback(body: RollbackRequest, services: ServicesDep) -> ModelStatus:
    from sqlalchemy.exc import OperationalError

    from serving.registry import RollbackError
    from serving.registry import rollback as roll_back

    try:
        await asyncio.to_thread(roll_back, services.database(), services.holder, body.to, body.actor, body.reason)
    except RollbackError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except OperationalError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the registry is unreachable: {exc.orig}",
                            {"Retry-After": "5"}) from None  # fmt: skip
    return _status(services)
