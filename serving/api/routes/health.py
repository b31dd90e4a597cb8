"""Liveness, readiness and metrics: unauthenticated, for the orchestrator and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from serving.api.deps import ServicesDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz", summary="A model is loaded and Kafka is reachable", responses={503: {"description": "Not ready"}}
)
async def readyz(services: ServicesDep) -> JSONResponse:
    model = services.holder.get()
    broker = bool(services.publisher.stats()["broker_up"])
    body = {"model_version": model.version if model else None, "broker_up": broker}
    ready = model is not None and broker
    if not ready:
        body["reasons"] = [
            r for r, bad in (("no model loaded", model is None), ("Kafka unreachable", not broker)) if bad
        ]
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
