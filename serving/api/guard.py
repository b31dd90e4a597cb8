"""The API's door: everything decided about a request *before its body is read*.

In this order, each refusal a small JSON error and nothing read beyond the headers:
1. the caller: ``/v1/admin/*`` and ``/v1/audit/*`` need the admin token, the rest of ``/v1/*`` a storefront key
   (401 / 403);
   FastAPI would read and parse a body before running a route's dependencies, so a stranger's 50 MB body
   would be parsed before its key was looked at;
2. the per-key rate limit (429 with ``Retry-After``);
3. the body's declared size (413) and type (415: JSON only, UTF-8 only);
4. while the body streams in, its real size: a body without ``Content-Length`` (chunked) is cut off at
   the limit with 413 too.

The caller found here is left in ``scope["state"]["caller"]`` for the routes' dependencies (which keep
the OpenAPI security declaration), and its *name* goes to the log context.
"""

from __future__ import annotations

import math

from serving.auth import Scope
from serving.observe import key_name_var

BODY_METHODS = (b"POST", b"PUT", b"PATCH")


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a streamed body passes the limit (caught by :class:`GuardMiddleware`)."""


ADMIN_PREFIXES = ("/v1/admin", "/v1/audit")  # operators' routes: the admin token only


def required_scope(path: str) -> Scope | None:
    """Which credential a path needs (None: open, like the health routes and the docs).

    >>> required_scope("/v1/admin/model"), required_scope("/v1/audit/repairs"), required_scope("/v1/recommend")
    (<Scope.ADMIN: 'admin'>, <Scope.ADMIN: 'admin'>, <Scope.STOREFRONT: 'storefront'>)
    >>> required_scope("/readyz") is None
    True
    """
    if any(path == prefix or path.startswith(prefix + "/") for prefix in ADMIN_PREFIXES):
        return Scope.ADMIN
    if path.startswith("/v1/"):
        return Scope.STOREFRONT
    return None


def _header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def json_type_problem(content_type: str | None) -> str | None:
    """Why a body's Content-Type is refused, or None for JSON in UTF-8.

    >>> json_type_problem("application/json; charset=utf-8") is None, json_type_problem("application/x+json") is None
    (True, True)
    >>> json_type_problem("application/x-www-form-urlencoded")
    "the body must be JSON: send 'Content-Type: application/json' (got 'application/x-www-form-urlencoded')"
    """
    if content_type is None:
        return "the body must be JSON: send 'Content-Type: application/json'"
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        return f"the body must be JSON: send 'Content-Type: application/json' (got {media[:80]!r})"
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return f"the body must be UTF-8 (got charset {value.strip()[:40]!r})"
    return None


class GuardMiddleware:
    def __init__(self, app, fastapi, error_response):
        self.app, self.fastapi, self.error = app, fastapi, error_response

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        services = self.fastapi.state.services
        refusal = self._check(scope, services)
        if refusal is not None:
            status, message, headers = refusal
            return await self.error(status, message, headers)(scope, receive, send)
        limit, seen, started = services.settings.max_body_bytes, [0], [False]

        async def limited_receive():
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    raise BodyTooLarge
            return message

        async def tracked_send(message):
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLarge:
            if started[0]:
                raise
            await self.error(413, f"the body is larger than {limit} bytes", {})(scope, receive, send)

    def _check(self, scope, services) -> tuple[int, str, dict] | None:
        needed = required_scope(scope["path"])
        if needed is not None and scope["method"] != "OPTIONS":
            refusal = self._authorise(scope, services, needed)
            if refusal is not None:
                return refusal
        if scope["path"] == "/v1/recommend" and services.batcher.full():
            # Shed before routing: under overload the refusals must cost next to nothing, or answering them
            # takes the CPU the decoder needs (measured: served throughput fell 20x when they went through FastAPI).
            services.metrics.shed.inc()
            return 503, "the decoder's queue is full; retry later", {"retry-after": str(services.batcher.retry_after())}
        if scope["method"].encode() not in BODY_METHODS:
            return None
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > services.settings.max_body_bytes):
            return 413, f"the body is larger than {services.settings.max_body_bytes} bytes", {}
        has_body = declared != "0" and (declared is not None or _header(scope, b"transfer-encoding") is not None)
        problem = json_type_problem(_header(scope, b"content-type")) if has_body else None
        return (415, problem, {}) if problem else None

    def _authorise(self, scope, services, needed: Scope) -> tuple[int, str, dict] | None:
        authorization = _header(scope, b"authorization") or ""
        kind, _, token = authorization.partition(" ")
        caller = services.keys.identify(token.strip()) if kind.lower() == "bearer" and token.strip() else None
        if caller is None:  # one answer for a missing and an unknown key: it must not help guessing
            return 401, "missing or invalid credentials", {"www-authenticate": "Bearer"}
        scope.setdefault("state", {})["caller"] = caller
        key_name_var.set(caller.name)
        if caller.scope is not needed:
            return 403, "not allowed", {}
        wait = services.limiter.hit(caller.name) if caller.scope is Scope.STOREFRONT else None
        if wait is not None:
            services.metrics.limited.labels(caller.name).inc()
            return 429, f"rate limit of key {caller.name!r} exceeded", {"retry-after": str(max(1, math.ceil(wait)))}
        return None
