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


class KeyRing:
    def __init__(self, storefront: frozenset[str], admin: str = ""):
        self.digests = {Scope.STOREFRONT: frozenset(d.lower() for d in storefront),
                        Scope.ADMIN: frozenset([admin.lower()] if admin else [])}  # fmt: skip

    def scope_of(self, key: str) -> Scope | None:
        d = digest(key)
        for scope, known in self.digests.items():
            if any(hmac.compare_digest(d, k) for k in known):
                return scope
        return None
