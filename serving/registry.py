"""The service's side of the model registry: roll back from the admin API, swap first, record second.

The learner owns registration and publishing (``learner/registry.py``); the service only needs to
re-point itself to an earlier version when an operator asks. It runs the registry's own statements
(``schemas/registry.py``), so a rollback here is the same change, with the same trail, as
``recast rollback``. The order makes it safe: the target is verified, loaded and warmed beside the
serving model first; only if that worked is the registry changed, in one transaction. A refused
target leaves both the registry and the served model as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from schemas import registry as statements
from schemas.tables import ModelVersion
from serving.hotswap import ModelHolder, SwapResult

T = ModelVersion.__table__.c


class RollbackError(ValueError):
    """A rollback that cannot be done; ``status`` is the HTTP status that says why (404, 409)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Rollback:
    version: str
    previous: str | None
    swap: SwapResult


def rollback(engine: Engine, holder: ModelHolder, to: str | None, actor: str, reason: str) -> Rollback:
    with engine.connect() as conn:
        active = conn.execute(statements.active_row()).first()
        current = active.version if active else None
        if to is None:
            to = statements.rollback_target([tuple(r) for r in conn.execute(statements.history())], current)
            if to is None:
                raise RollbackError("nothing to roll back to: no other version has served", 409)
        target = conn.execute(select(T.version, T.path, T.sha256, T.status).where(T.version == to)).first()
    if target is None:
        raise RollbackError(f"no model {to!r} in the registry", 404)
    if target.status == "rejected":
        raise RollbackError(f"{to} was rejected by the gate; activate it explicitly to serve it", 409)
    if target.version == current:
        raise RollbackError(f"{to} is already the active model", 409)
    with holder.registry_lock:  # the registry watcher waits until the registry says what is served
        before = holder.get()
        swap = holder.swap(target.path, expected_sha256=target.sha256)
        if not swap.ok:
            raise RollbackError(f"{to} was refused, {swap.version} keeps serving: {swap.error}", 409)
        try:
            with engine.begin() as conn:
                for statement in statements.activation(target.version, current, "rollback", actor, reason):
                    conn.execute(statement)
        except Exception:
            if before is not None:  # the registry did not change: serve what it still names
                holder.swap(before.path, expected_sha256=before.manifest_sha256)
            raise
    return Rollback(target.version, current, swap)
