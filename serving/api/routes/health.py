"""Liveness, readiness and metrics: unauthenticated, for the orchestrator and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from serving.api.deps import ServicesDep
from serving.api.routes.admin import RegistryStatus, registry_status
from serving.api.routes.catalog import CatalogStatus, catalog_status

router = APIRouter(tags=["operations"])


class Readiness(BaseModel):
    model_version: str | None
    broker_up: bool
    registry: RegistryStatus | None = Field(None, description="The registry's view (None: no registry watcher).")
    catalog: CatalogStatus | None = Field(None, description="The catalog version served.")
    reasons: list[str] = Field(default_factory=list, description="Why it is not ready (empty when it is).")


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="A model is loaded, it is the registry's active one, Kafka is reachable and the catalog was read",
    responses={503: {"model": Readiness, "description": "Not ready; `reasons` says why"}},
)
async def readyz(services: ServicesDep) -> JSONResponse:
    model = services.holder.get()
    broker = bool(services.publisher.stats()["broker_up"])
    registry = registry_status(services)
    reasons = [r for r, bad in (("no model loaded", model is None), ("Kafka unreachable", not broker)) if bad]
    if registry is not None and not registry.agrees:
        reasons.append(registry.reason)  # serving something the registry no longer names (or failed to swap to)
    # An unreadable registry is reported, not failed on: every replica would leave the pool at once while the
    # database restarts, though each still serves the model the registry named when it last answered.
    catalog = catalog_status(services)
    if services.settings.catalog_versions and catalog.read_at is None:
        # The same holds for the catalog once it was read. Before that, the service knows none of the items that
        # were retired, and it would serve them, so traffic stays away until the first read succeeds.
        reasons.append(f"catalog versions never read from Postgres ({catalog.error or 'not yet'}); retired items "
                       "could be served")  # fmt: skip
    elif services.live.conflict is not None:
        # Postgres holds retirements this service cannot apply: the same danger, until an operator sorts it out.
        reasons.append(f"the catalog in Postgres cannot be served: {services.live.conflict}")
    body = Readiness(model_version=model.version if model else None, broker_up=broker, registry=registry,
                     catalog=catalog, reasons=reasons)  # fmt: skip
    return JSONResponse(body.model_dump(), status_code=503 if reasons else 200)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})  # fmt: skip
async def metrics(services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
