"""The served catalog's state against a real Postgres: the first look records the data set as version 1,
retirements extend the chain one at a time from any number of writers, and the served state only moves
forward. No HTTP here (tests/serving/test_retire.py has the API)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine

from recast.catalog_version import CatalogVersion, CatalogVersionError
from recast.dataset import load_catalog
from schemas import catalog as ledger
from serving.catalog import CatalogConflict, LiveCatalog, look, read_head


@pytest.fixture
def catalog(make_dataset):
    return load_catalog(make_dataset())


@pytest.fixture
def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def test_the_first_look_records_the_data_set_and_the_next_service_reads_it(catalog, engine):
    first, second = LiveCatalog(catalog), LiveCatalog(catalog)
    assert first.current.version is None and first.read_at is None
    assert first.refresh(engine) and second.refresh(engine)
    assert first.current.version == second.current.version == 1
    assert first.current.state.digest == first.base.digest and not first.current.retired_positions
    assert not first.refresh(engine)  # nothing new
    with engine.connect() as conn:
        assert [(v.version, v.items, v.retired) for v in ledger.versions(conn)] == [(1, len(catalog), 0)]


def test_a_retirement_is_a_new_version_served_at_once(catalog, engine):
    live = LiveCatalog(catalog)
    done = live.retire(engine, ["7", "3", "7"], "out_of_stock", "tester", "recalled")
    assert (done.version, done.retired, done.already) == (2, ["7", "3"], [])  # version 1: the data set
    assert live.current.version == 2
    assert live.current.retired_positions == {catalog.index["7"], catalog.index["3"]}
    assert sorted(live.current.retired_index.tolist()) == sorted(live.current.retired_positions)
    again = live.retire(engine, ["3", "8"], "retired", "tester")
    assert (again.version, again.retired, again.already) == (3, ["8"], ["3"])
    assert dict(live.current.state.retired) == {"7": "out_of_stock", "3": "out_of_stock", "8": "retired"}
    nothing = live.retire(engine, ["8"], "retired", "tester")
    assert (nothing.version, nothing.retired, nothing.already) == (3, [], ["8"])  # no empty version
    with pytest.raises(CatalogVersionError, match="unknown item id"):
        live.retire(engine, ["9", "no-such-item"], "retired", "tester")
    with engine.connect() as conn:
        head = read_head(conn)  # checks the ledger against the recorded digest
        notes = [v.note for v in ledger.versions(conn)]
    assert head == live.current.state and notes[1] == "recalled"
    assert "9" not in head.retired  # the refused call changed nothing


def test_concurrent_writers_make_one_chain_and_lose_no_retirement(catalog, engine):
    """Two services and the CLI retiring at once: each retirement gets its own version, in one chain."""
    services = [LiveCatalog(catalog), LiveCatalog(catalog)]
    ids = [str(i) for i in range(12)]
    start = threading.Barrier(len(ids))

    def retire(n: int):
        start.wait()
        return services[n % 2].retire(engine, [ids[n]], "retired", f"writer {n}").version

    with ThreadPoolExecutor(len(ids)) as pool:
        got = list(pool.map(retire, range(len(ids))))
    assert sorted(got) == list(range(2, 2 + len(ids)))  # one version each, no gaps, no branch
    for live in services:
        live.refresh(engine)
        assert live.current.version == 1 + len(ids) and set(live.current.state.retired) == set(ids)
    with engine.connect() as conn:
        for n in range(1, 2 + len(ids)):  # every version's ledger contents hash to what was recorded with it
            found = ledger.contents(conn, n)
            assert CatalogVersion(found.codes, found.retired).digest == found.version.digest
            assert len(found.retired) == n - 1


def test_another_service_picks_up_a_retirement_and_never_goes_back(catalog, engine):
    writer, reader = LiveCatalog(catalog), LiveCatalog(catalog)
    reader.refresh(engine)
    writer.retire(engine, ["5"], "retired", "tester")
    assert reader.current.version == 1 and reader.refresh(engine) and reader.current.version == 2
    assert not reader.apply(CatalogVersion(reader.base.codes, {}, 1))  # an older version is ignored
    assert reader.current.version == 2
    with pytest.raises(CatalogConflict, match="item '5' is retired in version 2 but live in version 9"):
        reader.apply(CatalogVersion(reader.base.codes, {}, 9))  # newer, but it brings item 5 back
    assert reader.current.version == 2


def test_postgres_holding_another_catalog_is_reported_and_nothing_is_served_from_it(catalog, engine):
    live = LiveCatalog(catalog)
    other = {**live.base.codes, "0": "<a_9><b_9><c_9><d_0>"}  # one item recoded
    with engine.begin() as conn:
        ledger.append(conn, digest=CatalogVersion(other).digest, items=len(other), retired=0, actor="t", added=other)
    look(live, engine)
    assert live.read_at is None and live.current.version is None and live.conflict == live.error
    assert "is not the data set's" in live.error and "item '0' is <a_0><b_0><c_0><d_0>" in live.error


def test_a_ledger_that_does_not_hash_to_its_recorded_digest_is_refused(catalog, engine):
    live = LiveCatalog(catalog)
    live.refresh(engine)
    with engine.begin() as conn:  # a version whose recorded digest is not its contents'
        ledger.append(conn, digest="f" * 64, items=len(catalog), retired=1, actor="t", retirements={"4": "retired"})
    look(live, engine)
    assert "the ledger's items hash to" in live.conflict and live.current.version == 1


def test_a_checkpoint_is_admitted_only_under_a_catalog_that_extends_its_own(catalog, engine):
    live = LiveCatalog(catalog)
    trained = CatalogVersion(live.base.codes, {"6": "retired"}, 4)
    # Before Postgres is read the service knows no retirement: it adopts the checkpoint's.
    assert live.admit(trained) is None
    assert live.current.retired_positions == {catalog.index["6"]} and live.current.source.startswith("checkpoint")
    other_codes = CatalogVersion({**live.base.codes, "6": "<a_9><b_9><c_9><d_0>"})
    assert "changed code" in live.admit(other_codes)
    # Once read, the served catalog must extend the checkpoint's: version 1 of the ledger does not retire item 6.
    fresh = LiveCatalog(catalog)
    fresh.refresh(engine)
    assert "does not extend it: item '6' is retired in version 4 but live in version 1" in fresh.admit(trained)
    fresh.retire(engine, ["6"], "retired", "tester")
    assert fresh.admit(trained) is None
    assert fresh.admit(CatalogVersion(live.base.codes)) is None  # an old checkpoint: its base, all live
