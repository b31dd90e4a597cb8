"""Admin routes (admin token): what is served, a hot-swap on demand, and a rollback through the registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from serving.api.deps import Admin, ServicesDep

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Admin])


class SwapRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="Checkpoint directory, as the service's filesystem sees it.")
    sha256: str | None = Field(None, description="Expected sha256 of its manifest.json (as the registry stores).")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000, description="Why: kept in the registry's activation trail.")
    to: str | None = Field(None, max_length=128, description="The version to serve (default: the one before).")
    actor: str = Field("admin-api", min_length=1, max_length=128, description="Who asks (kept in the trail).")


class ModelStatus(BaseModel):
    version: str | None
    path: str | None
    engine: str
    load_s: float | None
    swaps: dict[str, int]
    last_swap: dict | None


def _status(services) -> ModelStatus:
    model, last = services.holder.get(), services.holder.last
    return ModelStatus(
        version=model.version if model else None, path=str(model.path) if model else None,
        engine=model.engine.name if model else services.settings.engine, load_s=model.load_s if model else None,
        swaps=dict(services.holder.swaps), last_swap=last.__dict__ if last else None,
    )  # fmt: skip


@router.get("/model", response_model=ModelStatus, summary="The model being served")
async def model(services: ServicesDep) -> ModelStatus:
    return _status(services)


@router.post(
    "/model",
    response_model=ModelStatus,
    responses={409: {"description": "The checkpoint was refused; the previous model keeps serving"}},
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
    responses={404: {"description": "No such version in the registry"},
               409: {"description": "Refused (rejected, already active, or its files fail the checks); nothing "
                     "changed"},
               503: {"description": "The registry's database is unreachable"}},
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
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the registry is unreachable: {exc.orig}") from None
    return _status(services)
