"""What every request leaves behind: its id (``X-Request-ID``, accepted or made), an access-log line, its
latency in the metrics, and the id and the calling key's *name* on every log line written while it runs.

The id and the key name live in context variables, set by :class:`ObservedMiddleware` for the request's
task; :class:`RequestContext` copies them onto each log record (the JSON formatter then writes them),
so a route logs with the plain ``logging`` API and still says which request and which storefront it
served. The key itself is never stored anywhere: only its configured name.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
key_name_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("key_name", default=None)

access = logging.getLogger("recast.access")
# An id a client sends is kept only if it is short and plain (it is written into every log line and header).
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class RequestContext(logging.Filter):
    """Adds ``request_id`` and ``key`` to every record written inside a request (absent outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id_var.get()
        if rid is not None:
            record.request_id = rid
            name = key_name_var.get()
            if name is not None:
                record.key = name
        return True


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` when it is usable, else a fresh one.

    >>> request_id_from([(b"x-request-id", b"abc-123")])
    'abc-123'
    >>> len(request_id_from([(b"x-request-id", b"bad id with spaces")]))
    32
    """
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _CLIENT_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class ObservedMiddleware:
    """Outermost: the request id in and out, the access log, latency by route and status (plain ASGI: no
    per-request task, no body buffering)."""

    def __init__(self, app, fastapi):
        self.app, self.fastapi = app, fastapi

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = request_id_from(scope["headers"])
        scope.setdefault("state", {})["request_id"] = rid
        token, key_token = request_id_var.set(rid), key_name_var.set(None)
        t0, status, sent = time.perf_counter(), [500], [0]

        async def send_observed(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            elif message["type"] == "http.response.body":
                sent[0] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            self._record(scope, status[0], sent[0], time.perf_counter() - t0)
            request_id_var.reset(token)
            key_name_var.reset(key_token)

    def _record(self, scope, status: int, size: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        services = getattr(self.fastapi.state, "services", None)
        if services is not None:
            services.metrics.request_seconds.labels(route, str(status)).observe(seconds)
        if services is None or services.settings.access_log:
            client = scope.get("client")
            access.info("%s %s %d", scope["method"], scope["path"], status, extra={
                "method": scope["method"], "path": scope["path"][:200], "route": route, "status": status,
                "duration_ms": round(1000 * seconds, 2), "bytes": size, "client": client[0] if client else None,
            })  # fmt: skip
