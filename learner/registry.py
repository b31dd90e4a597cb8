"""The model registry (``model_registry`` in Postgres): which checkpoints exist and which one serves.

A row pins a checkpoint directory by the sha256 of its ``manifest.json``; the manifest in turn
holds the hash of every other file, so the serving side (``serving/hotswap.py``) can refuse a
directory that changed after it was registered. Exactly one row is ``active``:
:func:`activate` retires the previous one in the same transaction, and the service swaps to
the new one on its next look at the registry. Activating an older version is a rollback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert

from recast.checkpoint import MANIFEST, CheckpointError, sha256_file, verify_checkpoint
from schemas.tables import ModelVersion

T = ModelVersion.__table__


class RegistryError(ValueError):
    """A registration or activation that cannot be done; the message says why."""


@dataclass(frozen=True)
class Registered:
    version: str
    path: str
    sha256: str
    status: str
    created_at: datetime | None = None


def register(conn: Connection, checkpoint: Path | str, metrics: dict | None = None) -> Registered:
    """Verify a checkpoint and record it as a ``candidate`` (again: same version, its path and hash refreshed)."""
    path = Path(checkpoint).resolve()
    try:
        manifest = verify_checkpoint(path)
    except CheckpointError as exc:
        raise RegistryError(f"not registered: {exc}") from None
    version, digest = manifest["sha256"]["model.safetensors"][:12], sha256_file(path / MANIFEST)
    metrics = metrics if metrics is not None else manifest.get("metrics", {})
    conn.execute(
        insert(T)
        .values(version=version, path=str(path), sha256=digest, metrics=metrics)
        .on_conflict_do_update(index_elements=[T.c.version], set_={"path": str(path), "sha256": digest})
    )
    return get(conn, version)


def activate(conn: Connection, version: str) -> Registered:
    """Make ``version`` the one the service runs; the active one before it is retired."""
    row = get(conn, version)
    if row.status == "rejected":
        raise RegistryError(f"{version} was rejected; register it again to serve it")
    conn.execute(update(T).where(T.c.status == "active", T.c.version != version).values(status="retired"))
    conn.execute(update(T).where(T.c.version == version).values(status="active"))
    return get(conn, version)


def get(conn: Connection, version: str) -> Registered:
    row = conn.execute(select(T.c.version, T.c.path, T.c.sha256, T.c.status, T.c.created_at)
                       .where(T.c.version == version)).first()  # fmt: skip
    if row is None:
        raise RegistryError(f"no model {version!r} in the registry")
    return Registered(*row)


def listing(conn: Connection) -> list[Registered]:
    rows = conn.execute(select(T.c.version, T.c.path, T.c.sha256, T.c.status, T.c.created_at)
                        .order_by(T.c.created_at.desc(), T.c.version))  # fmt: skip
    return [Registered(*r) for r in rows]
