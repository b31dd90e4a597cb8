"""The catalog's versions in Postgres: the reads and writes shared by the service, the CLI and the learner.

The tables are ``catalog_versions`` and ``catalog_items`` (see :class:`schemas.tables.CatalogVersionRow` for
why they are a ledger). These functions move plain values: item id -> code, and item id -> reason. What a
change means, its hash and whether it extends the version before it is computed by the caller
(``recast.catalog_version``), because schemas imports none of our packages. Every write takes
:func:`lock` first, so writers from several processes (two API replicas, the CLI) extend the chain one
at a time. Nothing here connects: each function runs on the caller's connection, inside the caller's
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, case, func, insert, null, select, update

from schemas.tables import CatalogItemRow, CatalogVersionRow

VERSIONS = CatalogVersionRow.__table__
ITEMS = CatalogItemRow.__table__
LOCK_KEY = 0x5EC_CA7A  # pg_advisory_xact_lock key of catalog writes


@dataclass(frozen=True)
class VersionRow:
    version: int
    parent: int | None
    digest: str
    items: int
    retired: int
    note: str
    actor: str
    created_at: datetime


@dataclass(frozen=True)
class Contents:
    """What one version holds, as plain values."""

    version: VersionRow
    codes: dict[str, str]  # item id -> code
    retired: dict[str, str]  # item id -> reason


def lock(conn: Connection) -> None:
    """Take the catalog's write lock until the transaction ends (Postgres frees it on commit or rollback)."""
    conn.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))


def head(conn: Connection) -> VersionRow | None:
    """The latest version, or None before the first one is recorded."""
    row = conn.execute(select(VERSIONS).order_by(VERSIONS.c.version.desc()).limit(1)).first()
    return None if row is None else VersionRow(*row)


def head_number(conn: Connection) -> int | None:
    """The latest version's number only (one index lookup: what a poller asks every few seconds)."""
    return conn.execute(select(func.max(VERSIONS.c.version))).scalar()


def versions(conn: Connection, limit: int = 50) -> list[VersionRow]:
    """The latest versions, newest first."""
    rows = conn.execute(select(VERSIONS).order_by(VERSIONS.c.version.desc()).limit(limit))
    return [VersionRow(*r) for r in rows]


def contents(conn: Connection, version: int) -> Contents | None:
    """What ``version`` held: every item added by then, and those retired by then with the reason. None if there
    is no such version."""
    row = conn.execute(select(VERSIONS).where(VERSIONS.c.version == version)).first()
    if row is None:
        return None
    c = ITEMS.c
    retired_then = case((c.retired_in <= version, c.reason), else_=None)
    codes, retired = {}, {}
    for item_id, code, reason in conn.execute(select(c.item_id, c.code, retired_then).where(c.added_in <= version)):
        codes[item_id] = code
        if reason is not None:
            retired[item_id] = reason
    return Contents(VersionRow(*row), codes, retired)


def append(conn: Connection, *, digest: str, items: int, retired: int, actor: str, note: str = "",
           added: dict[str, str] | None = None, retirements: dict[str, str] | None = None,
           entries: dict[str, dict] | None = None) -> int:  # fmt: skip
    """Record the next version: ``added`` items (id -> code) enter the ledger, with their ``entries`` (id -> the
    ``items.json`` entry of an item added online; the data set's items have none), and ``retirements`` (id -> reason),
    which must be live items, are retired in it. ``digest``, ``items`` and ``retired`` describe the new version's
    whole contents. The caller holds :func:`lock` and computed them from :func:`contents` of the head. Returns
    the new version's number."""
    parent = head_number(conn)
    version = 1 if parent is None else parent + 1
    conn.execute(insert(VERSIONS).values(version=version, parent=parent, digest=digest, items=items,
                                         retired=retired, note=note, actor=actor))  # fmt: skip
    if added:
        entries = entries or {}
        # SQL NULL, not JSON null, for the data set's items: added_items() selects the rows that have an entry.
        conn.execute(insert(ITEMS), [{"item_id": i, "code": code, "added_in": version, "entry": entries.get(i, null())}
                                     for i, code in added.items()])  # fmt: skip
    if retirements:
        now = conn.execute(select(func.now())).scalar_one()
        for reason in sorted(set(retirements.values())):
            ids = [i for i, r in retirements.items() if r == reason]
            done = conn.execute(update(ITEMS).where(and_(ITEMS.c.item_id.in_(ids), ITEMS.c.retired_in.is_(None)))
                                .values(retired_in=version, reason=reason, retired_at=now)).rowcount  # fmt: skip
            if done != len(ids):
                raise ValueError(f"version {version}: {len(ids) - done} of the items to retire are not live items "
                                 "of the ledger")  # fmt: skip
    return version


@dataclass(frozen=True)
class AddedItem:
    item_id: str
    code: str
    added_in: int
    entry: dict


def added_items(conn: Connection, version: int) -> list[AddedItem]:
    """The items added online by ``version`` (those with an entry), in the order they were added: by version,
    then by id as recorded. The grown catalog appends them in this order."""
    c = ITEMS.c
    rows = conn.execute(select(c.item_id, c.code, c.added_in, c.entry)
                        .where(and_(c.added_in <= version, c.entry.is_not(None))))  # fmt: skip
    return sorted((AddedItem(*r) for r in rows), key=lambda a: (a.added_in, _id_key(a.item_id)))


def _id_key(item_id: str) -> tuple[int, int | str]:
    # recast.catalog.id_order, repeated: schemas imports none of our packages.
    return (0, int(item_id)) if item_id.isdigit() else (1, item_id)
