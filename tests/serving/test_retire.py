"""Retiring items and excluding them per request, over real HTTP on the torch engine, against the real stack.

One server per module (the model loads once). Retirements accumulate in its catalog, so every test picks items
that are still live. The vLLM engine's side is in tests/serving/test_retire_vllm.py.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import create_engine

from ops.bench.variants import perturbed_copy
from schemas import catalog as ledger
from schemas.api import MAX_EXCLUDE
from schemas.events import parse_impression
from tests.support.api import ADMIN, ApiServer, api_settings, metric
from tests.support.cli import recast
from tests.support.data import histories
from tests.support.databases import fresh_database
from tests.support.kafka import consume
from tests.support.retire import most_served, retire_under_load, trained_after_retiring
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow

BODIES = [{"user_id": f"u-load-{n}", "history": h, "k": 20} for n, h in enumerate([[], *histories(7)])]


@pytest.fixture(scope="module")
def db(stack):
    with fresh_database(stack, "retire") as url:
        yield url


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory, shipped_data, tiny_checkpoint, db):
    settings = api_settings(stack, shipped_data, tmp_path_factory.mktemp("spool"), checkpoint=tiny_checkpoint,
                            beam_width=20, batch_max_size=8, batch_max_wait_ms=20, database_url=db,
                            registry_poll_s=0, catalog_poll_s=0.2)  # fmt: skip
    with ApiServer(settings) as server:
        yield server, settings


def retired_now(server) -> set[str]:
    return set(server.services.live.current.state.retired)


def test_the_service_starts_on_version_1_the_data_set(env, db):
    server, _ = env
    with server.client(ADMIN) as admin, server.client(None) as anyone:
        status = admin.get("/v1/admin/catalog").json()
        ready = anyone.get("/readyz").json()
    assert status["version"] >= 1 and status["source"] == "postgres" and status["read_at"] is not None
    assert ready["catalog"]["version"] == status["version"]
    assert not any("catalog" in reason for reason in ready["reasons"])
    with create_engine(db).connect() as conn:
        first = ledger.contents(conn, 1)
    assert first.version.note == "the data set's catalog" and len(first.codes) == status["items"] == 3686


def test_a_retired_item_never_appears_after_the_call_returns_under_load(env):
    server, _ = env
    item = most_served(server, BODIES, skip=retired_now(server))
    load = retire_under_load(server, BODIES, item, clients=4, after=40)
    assert load.served_before(item) >= 3  # it was being served: the test can fail
    assert load.response["retired"] == [item] and load.response["already_retired"] == []
    version = load.response["catalog_version"]
    after = load.sent_after_return()
    assert len(after) >= 40
    assert [a for a in after if item in a.items] == []
    assert all(a.status == 200 and len(a.items) == a.k for a in after)  # k items still, from the rest
    assert all(a.catalog_version >= version for a in after)
    assert all(a.status == 200 for a in load.answers)  # no request failed around the retirement
    metrics = server.metrics()
    assert metric(metrics, "recast_catalog_version") == server.services.live.current.version >= version
    assert metric(metrics, "recast_catalog_retired_items") == len(retired_now(server))


def test_a_retirement_is_recorded_and_served_by_a_restarted_service(env, stack, tmp_path, shipped_data,
                                                                    tiny_checkpoint, db):  # fmt: skip
    server, _ = env
    item = most_served(server, BODIES[:1], skip=retired_now(server))
    with server.client(ADMIN) as admin:
        r = admin.post("/v1/admin/items/retire", json={"item_ids": [item, item], "reason": "retired"})
    assert r.status_code == 200 and r.json()["retired"] == [item]
    version = r.json()["catalog_version"]
    settings = api_settings(stack, shipped_data, tmp_path / "spool", checkpoint=tiny_checkpoint, beam_width=20,
                            database_url=db, registry_poll_s=0, catalog_poll_s=0)  # fmt: skip
    with ApiServer(settings) as restarted, restarted.client() as c, restarted.client(ADMIN) as admin:
        status = admin.get("/v1/admin/catalog").json()
        served = c.post("/v1/recommend", json=BODIES[0]).json()
    assert status["version"] == version and status["retired"] == len(retired_now(server))
    assert item not in {i["item_id"] for i in served["items"]} and len(served["items"]) == BODIES[0]["k"]
    assert served["catalog_version"] == version


def test_retire_refuses_unknown_ids_and_bad_reasons_and_changes_nothing(env):
    server, _ = env
    before = server.services.live.current.version
    with server.client(ADMIN) as admin, server.client() as storefront:
        unknown = admin.post("/v1/admin/items/retire", json={"item_ids": ["3112", "no-such-item"]})
        reason = admin.post("/v1/admin/items/retire", json={"item_ids": ["3112"], "reason": "sold"})
        empty = admin.post("/v1/admin/items/retire", json={"item_ids": []})
        outsider = storefront.post("/v1/admin/items/retire", json={"item_ids": ["3112"]})
    assert unknown.status_code == 422 and unknown.json()["detail"]["unknown_item_ids"] == ["no-such-item"]
    assert "nothing was retired" in unknown.json()["detail"]["message"]
    assert reason.status_code == 422 and "'retired' or 'out_of_stock'" in reason.text
    assert empty.status_code == 422 and outsider.status_code == 403
    assert server.services.live.current.version == before and "3112" not in retired_now(server)


def test_exclude_leaves_items_out_and_still_returns_k(env):
    server, _ = env
    body = {"user_id": "u-exclude", "history": histories(2)[1], "k": 10}
    with server.client() as c:
        plain = [i["item_id"] for i in c.post("/v1/recommend", json=body).json()["items"]]
        excluded = c.post("/v1/recommend", json={**body, "exclude": plain[:5]}).json()["items"]
        unknown = c.post("/v1/recommend", json={**body, "exclude": ["3112", "nope"]})
        too_many = c.post("/v1/recommend", json={**body, "exclude": ["3112"] * (MAX_EXCLUDE + 1)})
    got = [i["item_id"] for i in excluded]
    assert len(got) == 10 and not set(got) & set(plain[:5])
    assert set(plain[5:]) <= set(got)  # what was not excluded is still there
    assert unknown.status_code == 422 and unknown.json()["detail"] == {
        "message": "1 unknown item id(s) in exclude", "unknown_item_ids": ["nope"]}
    assert too_many.status_code == 422 and f"at most {MAX_EXCLUDE}" in too_many.text


def test_impressions_record_the_catalog_version_each_list_was_served_under(env):
    server, settings = env
    with server.client() as c, server.client(ADMIN) as admin:
        first = c.post("/v1/recommend", json={"user_id": "u-cv-1", "history": [], "k": 5}).json()
        item = next(i["item_id"] for i in first["items"])
        retired = admin.post("/v1/admin/items/retire", json={"item_ids": [item]}).json()
        second = c.post("/v1/recommend", json={"user_id": "u-cv-2", "history": [], "k": 5}).json()
    assert retired["catalog_version"] == second["catalog_version"] == first["catalog_version"] + 1
    ids = {first["request_id"]: first["catalog_version"], second["request_id"]: second["catalog_version"]}
    records = consume(settings.kafka_bootstrap, [settings.impressions_topic],
                      lambda rs: set(ids) <= {parse_impression(r.value).request_id for r in rs}, "the two impressions")
    found = {imp.request_id: (imp.schema_version, imp.catalog_version)
             for imp in (parse_impression(r.value) for r in records)}  # fmt: skip
    assert {rid: found[rid] for rid in ids} == {rid: (2, v) for rid, v in ids.items()}


def test_a_retirement_made_with_the_cli_reaches_the_running_service(env, db, shipped_data):
    server, _ = env
    item = most_served(server, BODIES[:2], skip=retired_now(server))
    before = server.services.live.current.version
    out = recast("items", "retire", item, "--reason", "out_of_stock", "--note", "recalled",
                 env={"RECAST_DATABASE_URL": db, "RECAST_DATA_DIR": str(shipped_data)}).stdout  # fmt: skip
    assert f"catalog version {before + 1}: retired 1 item(s) (out_of_stock): {item}" in out
    wait_for(lambda: server.services.live.current.version == before + 1, "the service serving the CLI's version",
             timeout=30, state=lambda: server.services.live.current.version)  # fmt: skip
    with server.client() as c:
        lists = [c.post("/v1/recommend", json=b).json()["items"] for b in BODIES[:2]]
    assert all(item not in {i["item_id"] for i in items} for items in lists)
    listed = recast("items", "versions", "--limit", "1", env={"RECAST_DATABASE_URL": db}).stdout.split()
    assert listed[0] == str(before + 1) and "recalled" in listed


def test_a_swapped_in_model_keeps_the_retired_set(env, tmp_path, shipped_data, tiny_checkpoint):
    server, _ = env
    item = most_served(server, BODIES[:1], skip=retired_now(server))
    with server.client(ADMIN) as admin:
        assert admin.post("/v1/admin/items/retire", json={"item_ids": [item]}).status_code == 200
        other = perturbed_copy(tiny_checkpoint, tmp_path / "other", shipped_data, seed=3)
        swapped = admin.post("/v1/admin/model", json={"path": str(other)})
        assert swapped.status_code == 200, swapped.text
        try:
            with server.client() as c:
                served = c.post("/v1/recommend", json=BODIES[0]).json()
            assert served["model_version"] == swapped.json()["version"]
            assert item not in {i["item_id"] for i in served["items"]}
        finally:
            assert admin.post("/v1/admin/model", json={"path": str(tiny_checkpoint)}).status_code == 200


def test_a_checkpoint_whose_catalog_the_served_one_does_not_extend_is_refused(env, tmp_path, tiny_checkpoint, stack,
                                                                               shipped_data):  # fmt: skip
    server, _ = env
    live_item = next(i for i in ("3112", "2697", "100", "200") if i not in retired_now(server))
    ahead = trained_after_retiring(tiny_checkpoint, tmp_path / "ahead", live_item, 99)
    serving = server.services.holder.current.version
    with server.client(ADMIN) as admin:
        refused = admin.post("/v1/admin/model", json={"path": str(ahead)})
    assert refused.status_code == 409
    assert f"item '{live_item}' is retired in version 99 but live in version" in refused.json()["detail"]["error"]
    assert server.services.holder.current.version == serving
    # At start too: a service whose catalog (a fresh database: version 1) does not extend it refuses to start.
    from serving.api.state import start_services

    with fresh_database(stack, "refuse") as other_db:
        settings = api_settings(stack, shipped_data, tmp_path / "spool", checkpoint=ahead, database_url=other_db,
                                registry_poll_s=0, catalog_poll_s=0)  # fmt: skip
        with pytest.raises(RuntimeError, match=f"cannot serve .*item '{live_item}' is retired in version 99"):
            asyncio.run(start_services(settings))


def test_a_head_version_that_cannot_be_served_makes_the_service_not_ready(stack, tmp_path, shipped_data,
                                                                          tiny_checkpoint):  # fmt: skip
    with fresh_database(stack, "conflict") as db:
        settings = api_settings(stack, shipped_data, tmp_path / "spool", checkpoint=tiny_checkpoint, beam_width=20,
                                database_url=db, registry_poll_s=0, catalog_poll_s=0.2)  # fmt: skip
        with ApiServer(settings) as server, server.client(None) as anyone:
            wait_for(lambda: anyone.get("/readyz").status_code == 200, "ready (Kafka reached, the catalog read)",
                     timeout=60, state=lambda: anyone.get("/readyz").text)  # fmt: skip
            engine = create_engine(db)
            with engine.begin() as conn:  # written by hand: its recorded digest is not its contents'
                ledger.append(conn, digest="f" * 64, items=3686, retired=1, actor="hand",
                              retirements={"3112": "retired"})  # fmt: skip
            engine.dispose()

            def not_ready():
                r = anyone.get("/readyz")
                return r.status_code == 503 and r.json()

            body = wait_for(not_ready, "/readyz reporting the version it cannot serve", timeout=30)
            (reason,) = body["reasons"]
            assert "the catalog in Postgres cannot be served: catalog version 2" in reason
            assert body["catalog"]["version"] == 1  # it keeps serving what it had
