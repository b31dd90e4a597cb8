"""Adding items online over real HTTP on the torch engine, against the real stack (Postgres, Kafka): the codes they
get, the catalog version, the model reloaded over the grown catalog, validation, and ``recast items add``.

One server per module (the model loads once). Additions accumulate, so every test adds ids of its own.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine

from recast.dataset import load_item_entries
from schemas import catalog as ledger
from tests.support.api import ADMIN, ApiServer, api_settings
from tests.support.cli import recast
from tests.support.databases import fresh_database
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow

COPIED = "1"  # an item of the data set whose text new items copy


@pytest.fixture(scope="module")
def db(stack):
    with fresh_database(stack, "add") as url:
        yield url


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory, shipped_data, tiny_checkpoint, db):
    settings = api_settings(stack, shipped_data, tmp_path_factory.mktemp("spool"), checkpoint=tiny_checkpoint,
                            beam_width=20, database_url=db, registry_poll_s=0, catalog_poll_s=0.2)  # fmt: skip
    with ApiServer(settings) as server:
        yield server, settings


@pytest.fixture(scope="module")
def entries(shipped_data):
    return load_item_entries(shipped_data)


def add(server, items, **body):
    with server.client(ADMIN) as admin:
        return admin.post("/v1/admin/items", json={"items": items, **body})


def recommend(server, history, k=50):
    with server.client() as client:
        return client.post("/v1/recommend", json={"user_id": "u-add", "history": history, "k": k})


def copy_of(entries, item_id, new_id):
    entry = entries[item_id]
    return {"item_id": new_id, "title": entry["title"], "description": str(entry.get("description") or ""),
            "brand": entry.get("brand") or ""}  # fmt: skip


def test_an_added_item_with_an_existing_items_text_collides_and_both_are_returned_distinctly(env, entries):
    server, _ = env
    assert recommend(server, ["new-1"]).status_code == 422  # unknown before it is added: the test can fail
    before = server.services.live.current.version
    answer = add(server, [copy_of(entries, COPIED, "new-1")], note="a relisted product")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["catalog_version"] > before and body["served"] and body["error"] is None
    original = server.services.catalog.items[server.services.catalog.position(COPIED)]
    code = body["codes"]["new-1"]
    assert code.startswith("".join(original.sid)) and code != "".join(original.code)  # same SID, its own d token
    # The new item is recommended from its text before anyone bought it, and its twin for a history holding it.
    after_copied = [i["item_id"] for i in recommend(server, [COPIED]).json()["items"]]
    after_new = recommend(server, ["new-1"])
    assert after_new.status_code == 200
    listed = {i["item_id"]: i for i in after_new.json()["items"]}
    assert "new-1" in after_copied and COPIED in listed and "new-1" not in listed  # the history is not repeated
    assert listed[COPIED]["sid"] == "".join(original.sid)


def test_the_ledger_holds_the_new_version_with_the_items_text(env, db, entries):
    server, _ = env
    answer = add(server, [{"item_id": "new-2", "title": "Heavy duty epoxy glue twin pack", "brand": "Acme",
                           "categories": ["Adhesives"]}])  # fmt: skip
    assert answer.status_code == 200, answer.text
    version = answer.json()["catalog_version"]
    with create_engine(db).connect() as conn:
        added = {a.item_id: a for a in ledger.added_items(conn, version)}
        contents = ledger.contents(conn, version)
    assert added["new-2"].entry["categories"] == ["Adhesives"] and added["new-2"].added_in == version
    assert contents.codes["new-2"] == answer.json()["codes"]["new-2"] and contents.version.parent == version - 1
    assert server.services.live.current.version == version


def test_an_existing_id_is_a_conflict_and_changes_nothing(env):
    server, _ = env
    before = server.services.live.current.version
    answer = add(server, [{"item_id": COPIED, "title": "Something else"}])
    assert answer.status_code == 409
    assert answer.json()["detail"]["existing_item_ids"] == [COPIED]
    assert server.services.live.current.version == before


def test_a_payload_with_every_field_wrong_is_refused_naming_each_field(env):
    server, _ = env
    before = server.services.live.current.version
    wrong = {"item_id": 5, "title": "   ", "description": ["not", "a", "string"], "brand": "b" * 201,
             "categories": "tools", "price": 3}  # fmt: skip
    answer = add(server, [wrong])
    assert answer.status_code == 422
    fields = {tuple(e["loc"][-1:])[0] for e in answer.json()["detail"] if e["loc"][:3] == ["body", "items", 0]}
    assert {"item_id", "title", "description", "brand", "categories", "price"} <= fields
    for body in ({"items": []}, {"items": [{"item_id": "x", "title": "a"}] * 2}):
        with server.client(ADMIN) as admin:
            assert admin.post("/v1/admin/items", json=body).status_code == 422
    with server.client() as storefront:  # the storefront key is not the admin token
        assert storefront.post("/v1/admin/items", json={"items": [{"item_id": "y", "title": "a"}]}).status_code == 403
    assert server.services.live.current.version == before


def test_recast_items_add_records_them_and_a_swap_serves_them(env, db, entries, tmp_path):
    server, _ = env
    file = tmp_path / "new.json"
    file.write_text(json.dumps({"new-3": {k: v for k, v in copy_of(entries, "2", "x").items() if k != "item_id"}}))
    out = recast("items", "add", str(file), "--note", "from a file", env={"RECAST_DATABASE_URL": db})
    assert "new-3\t<" in out.stdout
    wait_for(lambda: "new-3" in server.services.live.current.catalog.index, "the poll reads the addition", timeout=10)
    assert recommend(server, ["new-3"]).status_code == 422  # recorded, not served until a swap
    model = server.services.holder.current
    with server.client(ADMIN) as admin:
        assert admin.post("/v1/admin/model", json={"path": str(model.path)}).status_code == 200
    assert recommend(server, ["new-3"]).status_code == 200
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"new-4": {"title": ""}}))
    refused = recast("items", "add", str(bad), check=False, env={"RECAST_DATABASE_URL": db})
    assert refused.returncode == 2 and "title" in refused.stderr and "nothing was added" in refused.stderr


def test_an_item_added_elsewhere_can_be_retired_before_a_swap_serves_it(env, db, entries, tmp_path):
    server, _ = env
    file = tmp_path / "new.json"
    file.write_text(json.dumps({"new-5": {k: v for k, v in copy_of(entries, "3", "x").items() if k != "item_id"}}))
    recast("items", "add", str(file), env={"RECAST_DATABASE_URL": db})
    wait_for(lambda: "new-5" in server.services.live.current.catalog.index, "the poll reads the addition", timeout=10)
    with server.client(ADMIN) as admin:
        retired = admin.post("/v1/admin/items/retire", json={"item_ids": ["new-5"]})
    assert retired.status_code == 200 and retired.json()["retired"] == ["new-5"]
    assert recommend(server, ["3"]).status_code == 200  # the retired set holds an item this model does not have
    model = server.services.holder.current
    with server.client(ADMIN) as admin:
        assert admin.post("/v1/admin/model", json={"path": str(model.path)}).status_code == 200
    assert recommend(server, ["new-5"]).status_code == 200  # known to the model now, as a history item
    assert "new-5" not in [i["item_id"] for i in recommend(server, ["3"]).json()["items"]]
