"""The catalog ledger's reads and writes on a real Postgres: what each version held stays readable as the
chain grows, and the digest recorded with a version is the caller's."""

import pytest
from sqlalchemy import create_engine

from schemas import catalog as ledger


def test_each_version_reads_back_as_it_was_while_the_chain_grows(database_url):
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            assert ledger.head(conn) is None and ledger.head_number(conn) is None
            ledger.lock(conn)
            one = ledger.append(conn, digest="1" * 64, items=3, retired=0, actor="t", note="base",
                                added={"a": "<a_1>", "b": "<a_2>", "c": "<a_3>"})  # fmt: skip
            two = ledger.append(conn, digest="2" * 64, items=3, retired=1, actor="t",
                                retirements={"b": "out_of_stock"})  # fmt: skip
            three = ledger.append(conn, digest="3" * 64, items=4, retired=2, actor="t",
                                  added={"d": "<a_4>"}, retirements={"a": "retired"})  # fmt: skip
        assert (one, two, three) == (1, 2, 3)
        with engine.connect() as conn:
            v1, v2, v3 = (ledger.contents(conn, n) for n in (1, 2, 3))
            assert ledger.contents(conn, 4) is None
            head, listed = ledger.head(conn), ledger.versions(conn)
        assert (v1.codes, v1.retired) == ({"a": "<a_1>", "b": "<a_2>", "c": "<a_3>"}, {})
        assert (v2.codes, v2.retired) == (v1.codes, {"b": "out_of_stock"})
        assert (v3.codes, v3.retired) == ({**v1.codes, "d": "<a_4>"}, {"b": "out_of_stock", "a": "retired"})
        assert (v3.version.parent, v3.version.digest, v1.version.note) == (2, "3" * 64, "base")
        assert head == v3.version and [v.version for v in listed] == [3, 2, 1]
    finally:
        engine.dispose()


def test_retiring_an_item_that_is_not_live_is_refused(database_url):

    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            ledger.append(conn, digest="1" * 64, items=1, retired=0, actor="t", added={"a": "<a_1>"})
            ledger.append(conn, digest="2" * 64, items=1, retired=1, actor="t", retirements={"a": "retired"})
        with pytest.raises(ValueError, match="not live items"), engine.begin() as conn:
            ledger.append(conn, digest="3" * 64, items=1, retired=1, actor="t", retirements={"a": "retired"})
        with engine.connect() as conn:
            assert ledger.head_number(conn) == 2  # the refused version went with its transaction
    finally:
        engine.dispose()
