"""Admin routes (admin token): what is served, and a hot-swap on demand."""

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
