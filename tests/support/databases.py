"""Postgres for the tests: fresh migrated databases, row counts, and the means to fault a write on purpose."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError

from schemas.tables import DeadLetter, ImpressionRow, OutcomeRow, RewardGroup

# The ingestion worker's tables, by the short names its tests compare counts under.
INGEST_TABLES = {"impressions": ImpressionRow, "outcomes": OutcomeRow, "groups": RewardGroup, "dead": DeadLetter}


def database_url(server: str, name: str) -> str:
    """The SQLAlchemy URL of database ``name`` on the server of ``server`` (password kept)."""
    return make_url(server).set(database=name).render_as_string(hide_password=False)


@contextmanager
def fresh_database(stack_or_server, prefix: str, migrated: bool = True) -> Iterator[str]:
    """A new database on the session's Postgres (or on the server URL given), migrated to head unless
    ``migrated=False``; yields its SQLAlchemy URL and drops it afterwards."""
    from ops.stack import migrate
    from ops.stack.servers import create_database, drop_database

    server = stack_or_server if isinstance(stack_or_server, str) else stack_or_server.services["postgres"].url
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    create_database(server, name)
    try:
        url = database_url(server, name)
        if migrated:
            migrate(url)
        yield url
    finally:
        drop_database(server, name)


def row_counts(engine: Engine, tables: dict | None = None) -> dict[str, int]:
    """Rows per table, by name (the ingest tables unless ``tables`` maps other names to tables)."""
    with engine.connect() as conn:
        return {k: conn.scalar(select(func.count()).select_from(t)) for k, t in (tables or INGEST_TABLES).items()}


@contextmanager
def locked_tables(url: str, tables: tuple[str, ...] = ("impressions", "outcomes", "reward_groups", "dead_letters")):
    """Hold ACCESS EXCLUSIVE locks on ``tables`` until the block ends: any write to them (any read too)
    waits, so a test can catch a worker with a write *in flight* (see :func:`waiting_on_locks`)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE"))
            try:
                yield conn
            finally:
                try:
                    conn.rollback()
                except DBAPIError:  # the test ended this session itself (refuse_connections): the locks went with it
                    pass
    finally:
        engine.dispose()


def _admin(url: str) -> Engine:
    return create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")


def waiting_on_locks(url: str) -> int:
    """Sessions of the database of ``url`` that are blocked on a lock right now (a write in flight)."""
    engine = _admin(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                                    "AND wait_event_type = 'Lock'"), {"db": make_url(url).database})  # fmt: skip
    finally:
        engine.dispose()


def sessions(url: str) -> int:
    """Client sessions connected to the database of ``url`` (this call's own is on another database)."""
    engine = _admin(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db"),
                               {"db": make_url(url).database})  # fmt: skip
    finally:
        engine.dispose()


def refuse_connections(url: str, refuse: bool = True) -> None:
    """Shut the database of ``url`` to new sessions and end every session it has (as a restart does),
    or (``refuse=False``) open it again."""
    db = make_url(url).database
    engine = _admin(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS {"false" if refuse else "true"}')
            if refuse:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"),
                             {"db": db})  # fmt: skip
    finally:
        engine.dispose()
