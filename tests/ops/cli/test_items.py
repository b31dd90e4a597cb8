"""`recast items` as an operator runs it: real processes against a real Postgres. (That a running service picks
up the CLI's retirement is in tests/serving/test_retire.py.)"""

from __future__ import annotations

from sqlalchemy import create_engine

from ops.stack.servers import free_port
from schemas import catalog as ledger
from tests.support.cli import recast


def test_retire_records_versions_and_a_repeat_changes_nothing(database_url, shipped_data):
    env = {"RECAST_DATABASE_URL": database_url, "RECAST_DATA_DIR": str(shipped_data), "RECAST_CATALOG_POLL_S": "5"}
    first = recast("items", "retire", "3112", "2697", "--reason", "out_of_stock", "--actor", "ops", env=env).stdout
    again = recast("items", "retire", "2697", "100", env=env).stdout
    same = recast("items", "retire", "100", env=env).stdout
    # Version 1 is the data set's catalog, recorded by the first write.
    assert "catalog version 2: retired 2 item(s) (out_of_stock): 3112 2697" in first
    assert "within RECAST_CATALOG_POLL_S (5 s)" in first
    assert "catalog version 3: retired 1 item(s) (retired): 100" in again
    assert "already retired (unchanged): 2697" in again
    assert "catalog version" not in same and "already retired (unchanged): 100" in same
    listed = [line.split() for line in recast("items", "versions", env=env).stdout.splitlines()]
    assert [(row[0], row[1]) for row in listed] == [("3", "2"), ("2", "1"), ("1", "-")]
    assert listed[1][-5:] == ["ops:", "retired", "2", "item(s):", "out_of_stock"]  # who, and the default note
    engine = create_engine(database_url)
    with engine.connect() as conn:
        v2, v3 = ledger.contents(conn, 2), ledger.contents(conn, 3)
    engine.dispose()
    assert v2.retired == {"3112": "out_of_stock", "2697": "out_of_stock"}
    assert v3.retired == {**v2.retired, "100": "retired"} and v3.version.actor != "ops"


def test_refusals_say_why_and_exit_2(database_url, shipped_data):
    env = {"RECAST_DATABASE_URL": database_url, "RECAST_DATA_DIR": str(shipped_data)}
    unknown = recast("items", "retire", "3112", "no-such-item", env=env, check=False)
    assert unknown.returncode == 2 and "nothing was retired: 1 unknown item id(s): 'no-such-item'" in unknown.stderr
    reason = recast("items", "retire", "3112", "--reason", "sold", env=env, check=False)
    assert reason.returncode == 2 and "reason must be one of retired, out_of_stock" in reason.stderr
    assert recast("items", "versions", env=env).stdout == ""  # a refused call records nothing, not even version 1
    nowhere = {"RECAST_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x",
               "RECAST_DATA_DIR": str(shipped_data)}  # fmt: skip
    down = recast("items", "retire", "3112", env=nowhere, check=False)
    assert down.returncode == 2 and "the catalog's database is unreachable" in down.stderr
