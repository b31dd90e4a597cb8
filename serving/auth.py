"""API keys: storefronts send ``Authorization: Bearer <key>``; only sha256 digests are configured.

A plain sha256 is enough here (not a password hash): keys are 32 random bytes made by
:func:`new_key`, so there is nothing to guess and a fast hash costs nothing per request.
Digests are compared in constant time. A refusal says as little as possible: 401 for a
missing or unknown credential, 403 for a known one used outside its scope.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum


class Scope(Enum):
    STOREFRONT = "storefront"
    ADMIN = "admin"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and the digest to configure: ``RECAST_API_KEYS`` / ``RECAST_ADMIN_TOKEN_SHA256``."""
    key = secrets.token_urlsafe(32)
    return key, digest(key)


@dataclass(frozen=True)
class Caller:
    scope: Scope
    name: str  # the key's configured name: what logs and rate limits use, never the key


class KeyRing:
    """``storefront``: digest -> name (or bare digests, named ``key-<first 8 hex>``); ``admin``: the admin
    token's digest (named ``admin``)."""

    def __init__(self, storefront: Mapping[str, str] | Iterable[str], admin: str = ""):
        named = storefront if isinstance(storefront, Mapping) else {d: f"key-{d.lower()[:8]}" for d in storefront}
        self.callers = [(d.lower(), Caller(Scope.STOREFRONT, n)) for d, n in named.items()]
        if admin:
            self.callers.append((admin.lower(), Caller(Scope.ADMIN, "admin")))

    def identify(self, key: str) -> Caller | None:
        d, found = digest(key), None
        for known, caller in self.callers:  # every digest compared, in constant time: no early exit to time
            if hmac.compare_digest(d, known):
                found = caller
        return found

    def scope_of(self, key: str) -> Scope | None:
        caller = self.identify(key)
        return caller.scope if caller is not None else None
