"""Alembic against the real Postgres of the test stack, on a database of its own.

upgrade head -> the schema equals ``schemas.tables`` (a forgotten revision fails here);
downgrade base -> nothing is left; upgrade head again works on the emptied database.
"""

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, delete, func, insert, inspect, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from ops.stack import migrate
from schemas.tables import (
    Base,
    CatalogItemRow,
    CatalogVersionRow,
    DeadLetter,
    ImpressionRow,
    ModelVersion,
    OutcomeRow,
    RewardGroup,
)
from tests.support.cli import recast_env
from tests.support.databases import fresh_database
from tests.support.paths import ROOT

TABLES = {"impressions", "outcomes", "reward_groups", "dead_letters", "model_registry", "training_runs",
          "model_activations", "repair_ledger", "audit_snapshots", "ingest_watermarks", "catalog_versions",
          "catalog_items"}


@pytest.fixture
def fresh_db(stack):
    """A new, empty (unmigrated) database and an engine on it."""
    with fresh_database(stack, "migrations", migrated=False) as url:
        engine = create_engine(url)
        try:
            yield url, engine
        finally:
            engine.dispose()


def tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def schema_diff(engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)


def test_upgrade_downgrade_upgrade(fresh_db):
    url, engine = fresh_db
    assert tables(engine) == set()

    migrate(url)
    assert tables(engine) == TABLES | {"alembic_version"}
    assert schema_diff(engine) == []

    migrate(url, "base", downgrade=True)
    engine.dispose()
    assert tables(engine) == {"alembic_version"}  # Alembic keeps its (now empty) version table

    migrate(url)
    engine.dispose()
    assert tables(engine) == TABLES | {"alembic_version"}
    assert schema_diff(engine) == []


def test_migrated_tables_store_events(fresh_db):
    url, engine = fresh_db
    migrate(url)
    now = datetime.now(UTC)
    items = [{"item_id": "42", "score": -0.5, "rank": 1}, {"item_id": "9", "score": -1.0, "rank": 2}]
    with Session(engine) as session, session.begin():
        session.add(
            ImpressionRow(
                request_id="r1",
                user_id="u1",
                segment="default",
                history=["7"],
                items=items,
                model_version="v1",
                schema_version=1,
                ts=now,
            )
        )
        session.flush()  # the group references the impression
        session.add(
            RewardGroup(
                request_id="r1",
                user_id="u1",
                segment="default",
                model_version="v1",
                history=["7"],
                items=["42", "9"],
                rewards=[1.0, 0.0],
                organic_positives=[],
                all_zero=False,
                opened_at=now,
                closes_at=now + timedelta(minutes=30),
            )
        )
        session.add(OutcomeRow(event_id="e1", user_id="u1", item_id="42", type="purchase", schema_version=1, ts=now))
        session.add(DeadLetter(topic="t", partition=0, offset=5, payload=b"\xff\x00", reason="not JSON"))
        session.add(ModelVersion(version="v1", path="/ckpt", sha256="0" * 64))
    with Session(engine) as session:
        group = session.get(RewardGroup, "r1")
        assert group.rewards == [1.0, 0.0] and group.window_open is True
        assert session.get(ImpressionRow, "r1").items == items  # JSONB round trip
        assert session.scalar(select(DeadLetter.payload)) == b"\xff\x00"
        assert session.get(ModelVersion, "v1").status == "candidate"
        assert session.get(ModelVersion, "v1").metrics == {}


@pytest.mark.parametrize(
    "row",
    [
        lambda now: OutcomeRow(event_id="e", user_id="u", item_id="i", type="view", schema_version=1, ts=now),
        lambda now: ModelVersion(version="v", path="/p", sha256="0" * 64, status="deployed"),
        lambda now: DeadLetter(topic="t", partition=0, offset=1, payload=b"", reason="x"),  # a duplicate source
    ],
)
def test_constraints_refuse_bad_rows(fresh_db, row):
    url, engine = fresh_db
    migrate(url)
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        session.add(DeadLetter(topic="t", partition=0, offset=1, payload=b"", reason="first"))
    with pytest.raises(IntegrityError), Session(engine) as session, session.begin():
        session.add(row(now))


def test_alembic_command_line_takes_the_url_from_settings(fresh_db):
    url, engine = fresh_db
    env = recast_env(database_url=url)
    proc = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert tables(engine) == TABLES | {"alembic_version"}


def test_the_catalog_ledger_is_append_only_and_one_chain(fresh_db):
    url, engine = fresh_db
    migrate(url)
    versions, items = CatalogVersionRow.__table__, CatalogItemRow.__table__

    def version(n: int, parent: int | None):
        return insert(versions).values(version=n, parent=parent, digest="0" * 64, items=1, retired=0, actor="t")

    with engine.begin() as conn:
        conn.execute(version(1, None))
        conn.execute(insert(items).values(item_id="a", code="<a_1><b_0>", added_in=1))
        conn.execute(version(2, 1))
        # A live item is retired once: the one change the ledger takes.
        conn.execute(update(items).values(retired_in=2, reason="retired", retired_at=func.now()))
    refused = [
        (update(items).values(code="<a_2><b_0>"), "code and the version that added it never change"),
        (update(items).values(entry={"title": "edited"}), r"never change \(nor its entry\)"),
        (update(items).values(reason="out_of_stock"), "was retired in version 2 and stays so"),
        (update(items).values(retired_in=None, reason=None, retired_at=None), "stays so"),
        (delete(items), "never deleted"),
        (update(versions).where(versions.c.version == 2).values(note="edited"), "version 2 is recorded"),
        (delete(versions).where(versions.c.version == 2), "never deleted"),
        (version(4, 2), "ck_catalog_versions_chain"),  # a gap
        (version(3, 1), "ck_catalog_versions_chain"),  # a branch
        (version(2, 1), "pk_catalog_versions"),  # a second version 2
        (insert(items).values(item_id="b", code="<a_3>", added_in=2, reason="retired"),
         "ck_catalog_items_retirement"),
        (insert(items).values(item_id="b", code="<a_3>", added_in=2, retired_in=2, reason="retired",
                              retired_at=func.now()), "ck_catalog_items_order"),  # fmt: skip
    ]
    for statement, message in refused:
        with pytest.raises(DBAPIError, match=message), engine.begin() as conn:
            conn.execute(statement)
    with engine.connect() as conn:
        assert conn.execute(select(items.c.code, items.c.retired_in, items.c.reason)).all() == [
            ("<a_1><b_0>", 2, "retired")]
        assert conn.scalar(select(func.count()).select_from(versions)) == 2
