"""Dependencies of the routes: the process's services and the caller's scope.

All ``async``: FastAPI runs a plain ``def`` dependency in a worker thread, and those two thread
hops per request cost more than the rest of the route (profiled under load)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from serving.api.state import Services
from serving.auth import Scope

_bearer = HTTPBearer(auto_error=False, description="A storefront API key, or the admin token for /v1/admin.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def _require(scope: Scope):
    async def check(request: Request, services: ServicesDep, creds: Credentials) -> Scope:
        # The guard (serving/api/guard.py) already decided, before the body was read; this repeats the check
        # from what it found, so a route mounted outside the guard's paths still cannot run unauthenticated.
        caller = request.scope.get("state", {}).get("caller")
        if caller is None and creds is not None:
            caller = services.keys.identify(creds.credentials)
        # One message for a missing and an unknown key: the answer must not help guessing.
        if caller is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid credentials",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        if caller.scope is not scope:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "not allowed")
        return caller.scope

    return check


Storefront = Depends(_require(Scope.STOREFRONT))
Admin = Depends(_require(Scope.ADMIN))
