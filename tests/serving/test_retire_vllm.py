"""Retiring items and excluding them per request on the vLLM engine, over real HTTP against the real stack.

vLLM is slow to start on the CPU, so one server serves the whole module (tests/serving/test_retire.py has the
torch engine's side and the routes' refusals). The engines' agreement under removed items is checked without
HTTP in tests/serving/test_vllm_engine.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import vllm  # noqa: F401  (fail at collection where vLLM is not installed)

from tests.support.api import ADMIN, ApiServer, api_settings
from tests.support.data import histories
from tests.support.databases import fresh_database
from tests.support.retire import most_served, retire_under_load
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow

BODIES = [{"user_id": f"u-vllm-{n}", "history": h, "k": 10} for n, h in enumerate([[], *histories(5)])]


@pytest.fixture(scope="module")
def server(stack, tmp_path_factory, shipped_data, tiny_checkpoint):
    with fresh_database(stack, "retire_vllm") as db:
        settings = api_settings(stack, shipped_data, tmp_path_factory.mktemp("spool"), checkpoint=tiny_checkpoint,
                                engine="vllm", beam_width=20, batch_max_size=8, batch_max_wait_ms=20,
                                database_url=db, registry_poll_s=0, catalog_poll_s=0)  # fmt: skip
        with ApiServer(settings) as server:
            yield server


def test_a_retired_item_never_appears_after_the_call_returns_under_load(server):
    assert server.services.holder.current.engine.name == "vllm"
    item = most_served(server, BODIES)
    load = retire_under_load(server, BODIES, item, clients=3, after=15)
    assert load.served_before(item) >= 3  # it was being served: the test can fail
    assert load.response["retired"] == [item]
    after = load.sent_after_return()
    assert len(after) >= 15 and [a for a in after if item in a.items] == []
    assert all(a.status == 200 and len(a.items) == a.k for a in after)
    assert all(a.catalog_version >= load.response["catalog_version"] for a in after)
    assert all(a.status == 200 for a in load.answers)


def test_exclude_leaves_items_out_and_still_returns_k(server):
    retired = set(server.services.live.current.state.retired)
    body = {"user_id": "u-vllm-exclude", "history": histories(3)[2], "k": 10}
    with server.client() as c:
        plain = [i["item_id"] for i in c.post("/v1/recommend", json=body).json()["items"]]

        def ask(extra: dict) -> list[str]:
            return [i["item_id"] for i in c.post("/v1/recommend", json={**body, **extra}).json()["items"]]

        # The same history twice in one batch with different exclusions: the processor must tell them apart.
        batcher = server.services.batcher
        with ThreadPoolExecutor(3) as pool:
            with server.decoder_held():
                first = pool.submit(ask, {})  # taken into a batch that waits for the decoder ...
                # Not just taken from the queue: handed to the decoder, so the batch is closed (the collector
                # keeps a batch open for batch_max_wait_ms, and the next two could still have joined it).
                wait_for(lambda: server.decodes_waiting() == 1 and batcher.depth() == 1, "a batch waiting to decode")
                pending = [pool.submit(ask, {"exclude": plain[:n]}) for n in (3, 6)]  # ... these two queue behind it
                wait_for(lambda: batcher._queue.qsize() == 2, "both requests queued for the next batch",
                         state=batcher._queue.qsize)  # fmt: skip
            got = [p.result() for p in pending]
            assert first.result() == plain
        assert got == [ask({"exclude": plain[:n]}) for n in (3, 6)]  # as each would be served alone
    for n, items in zip((3, 6), got, strict=True):
        assert len(items) == 10 and not set(items) & set(plain[:n]) and not set(items) & retired
        assert set(plain[n:]) <= set(items)
    with server.client(ADMIN) as admin:
        assert admin.get("/v1/admin/catalog").json()["retired"] == len(retired)
