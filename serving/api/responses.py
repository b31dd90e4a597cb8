"""The error statuses each route can answer, for its OpenAPI entry: one place, so the document lists every
status the API can return (the fuzzing suite checks that it does)."""

from __future__ import annotations

from schemas.api import ErrorBody

WHY = {
    400: "The body could not be parsed (not UTF-8, or nested too deep)",
    401: "Missing or invalid credentials",
    403: "The credentials are valid but not for this route",
    404: "No such thing",
    409: "Refused; nothing changed",
    413: "The body is larger than the service accepts (RECAST_MAX_BODY_BYTES)",
    415: "The body is not JSON in UTF-8 (send Content-Type: application/json)",
    422: "The body is well-formed JSON but invalid: each problem with where it is",
    429: "This key is over its rate limit; Retry-After says when to come back",
    503: "Not able to serve now (no model yet, the decoder's queue is full, or a dependency is away); "
    "Retry-After says when to try again",
}
# Every route under /v1 is guarded before its body is read (serving/api/guard.py).
GUARDED = (401, 403, 413, 415, 429)


def errors(*codes: int, **why: str) -> dict:
    """``responses=`` for a route: each status with the shared error body; ``why`` overrides a description
    (keyword ``s409="..."``)."""
    out = {}
    for code in sorted(set(codes)):
        out[code] = {"model": ErrorBody, "description": why.get(f"s{code}", WHY[code])}
    return out
