"""``create_app(settings)``: the FastAPI application. Nothing is loaded until it starts (lifespan).

The middleware, outermost first: :class:`~serving.observe.ObservedMiddleware` (request id, access log,
latency), CORS (a browser's preflight is answered here, before any credential is asked for),
:class:`~serving.api.guard.GuardMiddleware` (credentials, rate limit, body size and type: all before the
body is read), then the routes. Errors of every kind have one JSON shape (:mod:`serving.api.errors`).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from schemas.settings import Settings, get_settings
from serving.api import errors
from serving.api.guard import GuardMiddleware
from serving.api.routes import admin, audit, catalog, events, health, recommend
from serving.api.state import start_services
from serving.observe import ObservedMiddleware

DESCRIPTION = """Generative recommendations over semantic IDs.

Storefronts call `POST /v1/recommend` and report what shoppers did with `POST /v1/events`,
both with `Authorization: Bearer <API key>` and a JSON body (`Content-Type: application/json`).
Every served list is logged as an impression and learned from. Every answer carries an
`X-Request-ID` (the client's, when it sends a usable one)."""


def create_app(settings: Settings | None = None) -> FastAPI:
    from fastapi_offline import FastAPIOffline

    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.services = await start_services(settings)
        try:
            yield
        finally:
            await app.state.services.stop()

    # FastAPIOffline: /docs loads Swagger UI's JS and CSS from the installed fastapi-offline package, not a CDN,
    # so the page works on a machine with no internet (and leaks no visit to a third party).
    app = FastAPIOffline(title="Recast", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                         redoc_url=None)  # fmt: skip
    for module in (recommend, events, admin, catalog, audit, health):
        app.include_router(module.router)
    errors.install(app)
    app.add_middleware(GuardMiddleware, fastapi=app, error_response=errors.error_response)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                           expose_headers=["X-Request-ID", "Retry-After"], max_age=600)  # fmt: skip
    app.add_middleware(ObservedMiddleware, fastapi=app)
    return app
