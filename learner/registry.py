"""The model registry (``model_registry`` in Postgres): which checkpoints exist and which one serves.

A row pins a checkpoint directory by the sha256 of its ``manifest.json``; the manifest in turn
holds the hash of every other file, so the serving side (``serving/hotswap.py``) can refuse a
directory that changed after it was registered. Exactly one row is ``active``: :func:`activate`
retires the previous one in the same transaction and records who made the change and why
(``model_activations``); the service swaps to the new one on its next look at the registry.
:func:`rollback` activates an earlier version after checking its files again; :func:`reject`
records a candidate the gate refused, with the reason, so it is never served by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert

from recast.checkpoint import MANIFEST, CheckpointError, manifest_version, sha256_file, verify_checkpoint
from schemas import registry as statements
from schemas.tables import ModelActivation, ModelVersion

T = ModelVersion.__table__
A = ModelActivation.__table__


class RegistryError(ValueError):
    """A registration or activation that cannot be done; the message says why."""


@dataclass(frozen=True)
class Registered:
    version: str
    path: str
    sha256: str
    status: str
    created_at: datetime | None = None
    parent_version: str | None = None
    reason: str | None = None


_COLUMNS = (T.c.version, T.c.path, T.c.sha256, T.c.status, T.c.created_at, T.c.parent_version, T.c.reason)


def register(conn: Connection, checkpoint: Path | str, metrics: dict | None = None) -> Registered:
    """Verify a checkpoint and record it as a ``candidate`` (again: same version, its path and hash refreshed).

    The parent comes from the manifest (``parent.version``), so lineage needs no bookkeeping by the caller."""
    path = Path(checkpoint).resolve()
    try:
        manifest = verify_checkpoint(path)
    except CheckpointError as exc:
        raise RegistryError(f"not registered: {exc}") from None
    version, digest = manifest_version(manifest), sha256_file(path / MANIFEST)
    metrics = metrics if metrics is not None else manifest.get("metrics", {})
    parent = manifest.get("parent")  # {"version", "path"} from a refresh; the bare version from `recast rl`
    parent = parent.get("version") if isinstance(parent, dict) else parent
    conn.execute(
        insert(T)
        .values(version=version, path=str(path), sha256=digest, metrics=metrics, parent_version=parent)
        .on_conflict_do_update(index_elements=[T.c.version], set_={"path": str(path), "sha256": digest})
    )
    return get(conn, version)


def activate(conn: Connection, version: str, actor: str = "operator", reason: str = "",
             action: str = "activate", force: bool = False) -> Registered:  # fmt: skip
    """Make ``version`` the one the service runs; the active one before it is retired. Recorded with ``actor``,
    ``reason`` and ``action`` (activate | publish | rollback). A rejected version needs ``force``.

    Its files are checked against the registered hash first: activating a directory that changed since it was
    registered would make the registry name a model no service can load (they refuse it and keep the old one)."""
    row = get(conn, version)
    verify_registered(row)
    if row.status == "rejected" and not force:
        raise RegistryError(f"{version} was rejected ({row.reason or 'no reason recorded'}); "
                            "activate it with --force to serve it anyway")  # fmt: skip
    current = active(conn)
    if current is not None and current.version == version:
        return row
    for statement in statements.activation(version, current.version if current else None, action, actor, reason):
        conn.execute(statement)
    return get(conn, version)


def reject(conn: Connection, version: str, reason: str) -> Registered:
    """Record that the gate refused ``version``: it stays registered (for the audit), never served."""
    row = get(conn, version)
    if row.status == "active":
        raise RegistryError(f"{version} is serving; roll back before rejecting it")
    conn.execute(update(T).where(T.c.version == version).values(status="rejected", reason=reason))
    return get(conn, version)


def rollback(conn: Connection, to: str | None = None, actor: str = "operator", reason: str = "") -> Registered:
    """Serve an earlier version again: ``to``, or the latest one that served before the current model (see
    :func:`schemas.registry.rollback_target`). Its files are checked against the registered hash first."""
    current = active(conn)
    if to is None:
        to = statements.rollback_target([tuple(r) for r in conn.execute(statements.history())],
                                        current.version if current else None)  # fmt: skip
        if to is None:
            raise RegistryError("nothing to roll back to: no other version has served")
    target = get(conn, to)
    if current is not None and target.version == current.version:
        raise RegistryError(f"{to} is already serving")
    return activate(conn, target.version, actor=actor, reason=reason, action="rollback")


def verify_registered(row: Registered) -> None:
    """The directory still holds exactly what was registered: manifest hash, then every file against it."""
    path = Path(row.path)
    if not (path / MANIFEST).is_file():
        raise RegistryError(f"{row.version}: {path / MANIFEST} is missing")
    if sha256_file(path / MANIFEST) != row.sha256.lower():
        raise RegistryError(f"{row.version}: {path / MANIFEST} changed since it was registered")
    try:
        verify_checkpoint(path)
    except CheckpointError as exc:
        raise RegistryError(f"{row.version}: {exc}") from None


def get(conn: Connection, version: str) -> Registered:
    row = conn.execute(select(*_COLUMNS).where(T.c.version == version)).first()
    if row is None:
        raise RegistryError(f"no model {version!r} in the registry")
    return Registered(*row)


def active(conn: Connection) -> Registered | None:
    row = conn.execute(statements.active_row()).first()
    return None if row is None else get(conn, row.version)


def listing(conn: Connection) -> list[Registered]:
    rows = conn.execute(select(*_COLUMNS).order_by(T.c.created_at.desc(), T.c.version))
    return [Registered(*r) for r in rows]


def activations(conn: Connection, limit: int = 50) -> list[dict]:
    """The latest changes of the active model, newest first: who, why, from what."""
    rows = conn.execute(select(A.c.at, A.c.action, A.c.version, A.c.previous_version, A.c.actor, A.c.reason)
                        .order_by(A.c.at.desc(), A.c.id.desc()).limit(limit))  # fmt: skip
    return [dict(r._mapping) for r in rows]
