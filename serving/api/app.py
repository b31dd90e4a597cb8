"""``create_app(settings)``: the FastAPI application. Nothing is loaded until it starts (lifespan)."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

from fastapi import FastAPI

from schemas.settings import Settings, get_settings
from serving.api.routes import admin, audit, events, health, recommend
from serving.api.state import start_services

DESCRIPTION = """Generative recommendations over semantic IDs.

Storefronts call `POST /v1/recommend` and report what shoppers did with `POST /v1/events`,
both with `Authorization: Bearer <API key>`. Every served list is logged as an impression
and learned from."""


class LatencyMiddleware:
    """Request latency by route template and status (a plain ASGI middleware: no per-request task)."""

    def __init__(self, app, fastapi: FastAPI):
        self.app, self.fastapi = app, fastapi

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            services = getattr(self.fastapi.state, "services", None)
            route = scope.get("route")
            if services is not None:
                services.metrics.request_seconds.labels(getattr(route, "path", "unmatched"), str(status[0])).observe(
                    time.perf_counter() - t0
                )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.services = await start_services(settings)
        try:
            yield
        finally:
            await app.state.services.stop()

    app = FastAPI(title="Recast", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    for module in (recommend, events, admin, audit, health):
        app.include_router(module.router)
    app.add_middleware(LatencyMiddleware, fastapi=app)
    return app
