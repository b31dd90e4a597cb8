"""The model registry's statements, defined once for the two processes that change which model serves.

The learner publishes and rolls back (``learner/registry.py``); the service rolls back from its
admin route and reads the active row (``serving/hotswap.py``). Both run these statements, so
"activate" means the same thing everywhere: the active row is retired, the new one becomes active,
and the change is recorded in ``model_activations`` with who made it and why. Nothing here
connects: these are SQLAlchemy Core statements for the caller's own transaction.
"""

from __future__ import annotations

from sqlalchemy import Select, insert, select, update
from sqlalchemy.sql import Executable

from schemas.tables import ModelActivation, ModelVersion

REGISTRY = ModelVersion.__table__
ACTIVATIONS = ModelActivation.__table__


def active_row() -> Select:
    """The active model (version, path, sha256); the newest should several ever be active."""
    t = REGISTRY.c
    return select(t.version, t.path, t.sha256).where(t.status == "active").order_by(t.created_at.desc()).limit(1)


def activation(version: str, previous: str | None, action: str, actor: str, reason: str) -> list[Executable]:
    """Make ``version`` the active model (retiring the one before) and record the change, in that order."""
    t = REGISTRY.c
    return [
        update(REGISTRY).where(t.status == "active", t.version != version).values(status="retired"),
        update(REGISTRY).where(t.version == version).values(status="active", reason=None),
        insert(ACTIVATIONS).values(version=version, previous_version=previous, action=action, actor=actor,
                                   reason=reason),  # fmt: skip
    ]


def history() -> Select:
    """Every activation, oldest first: (version, previous_version, action)."""
    a = ACTIVATIONS.c
    return select(a.version, a.previous_version, a.action).order_by(a.at, a.id)


def rollback_target(rows: list[tuple[str, str | None, str]], current: str | None) -> str | None:
    """Where a bare rollback goes: the latest version that served before ``current``, skipping any version
    a rollback ever left (it was rolled back for a reason) and ``current`` itself. ``rows``: :func:`history`.

    >>> rows = [("a", None, "activate"), ("b", "a", "publish"), ("c", "b", "publish")]
    >>> rollback_target(rows, "c")
    'b'
    >>> rollback_target(rows + [("b", "c", "rollback")], "b")  # c was left by a rollback: back to a
    'a'
    >>> rollback_target([("a", None, "activate")], "a") is None
    True
    """
    left = {previous for _, previous, action in rows if action == "rollback" and previous is not None}
    for version, _, _ in reversed(rows):
        if version != current and version not in left:
            return version
    return None
