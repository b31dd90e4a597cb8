"""Every error as one JSON shape (``schemas.api.ErrorBody``), built so that it cannot itself fail.

FastAPI's default 422 echoes the input back: a megabyte body comes back whole, and a value that JSON
cannot encode (a lone surrogate, NaN) turned the 422 into a 500. Here a validation error keeps only
where and what (``loc``, ``msg``, ``type``), every string is cut short and made encodable, and an
unexpected exception is logged and answered 500 without details (the suite's fuzzing expects none).
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from schemas.api import ErrorBody
from serving.admission import Overloaded
from serving.observe import request_id_var

log = logging.getLogger("recast.api")
MAX_TEXT = 200


def safe(value, depth: int = 0):
    """A JSON-encodable copy of an error detail: strings cut to 200 characters with anything unencodable
    escaped, non-finite floats as text, containers to a bounded size and depth.

    >>> safe({"x": float("nan"), "s": "a\\ud800" + "b" * 300})["s"][:8], safe(float("inf"))
    ('a\\\\ud800b', 'inf')
    """
    if isinstance(value, str):
        text = value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "..."
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth > 4:
        return "..."
    if isinstance(value, dict):
        return {safe(str(k)): safe(v, depth + 1) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple):
        return [safe(v, depth + 1) for v in list(value)[:50]]
    return safe(str(value))


def error_response(status: int, detail, headers: dict | None = None) -> JSONResponse:
    body = ErrorBody(detail=safe(detail), request_id=request_id_var.get())
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def validation_detail(errors) -> list[dict]:
    """Where and what, never the input (``input`` and ``ctx`` dropped; at most 20 errors)."""
    return [{"loc": [p if isinstance(p, int) else safe(str(p)) for p in e.get("loc", ())][:10],
             "msg": safe(e.get("msg", "invalid")), "type": safe(e.get("type", "value_error"))}
            for e in list(errors)[:20]]  # fmt: skip


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, validation_detail(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        request.app.state.services.metrics.shed.inc()
        return error_response(503, str(exc), {"Retry-After": str(max(1, math.ceil(exc.retry_after)))})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error; the request id identifies it in the service's log")
