"""The API over real HTTP against the real stack: uvicorn, the torch engine, Tansu, Postgres.

One server per module (the model loads once); every test uses its own users and request ids.
"""

from __future__ import annotations

import ast
import csv
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer
from sqlalchemy import create_engine

from learner.registry import activate, register
from ops.bench.variants import perturbed_copy as variant
from ops.stack.servers import create_topics
from schemas.events import parse_impression, parse_outcome
from schemas.settings import Settings
from serving.auth import digest
from tests.conftest import fresh_database
from tests.serving.api_server import ADMIN, KEY, ApiServer

pytestmark = pytest.mark.slow


def histories(data, n: int) -> list[list[str]]:
    with (data / "valid.csv").open() as f:
        rows = list(csv.DictReader(f))[:n]
    return [[str(i) for i in ast.literal_eval(r["history_item_id"])][-10:] for r in rows]


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory, shipped_data, tiny_checkpoint):
    tag = uuid.uuid4().hex[:8]
    topics = [f"imp-{tag}", f"out-{tag}"]
    create_topics(stack.services["kafka"].url, topics, 2)
    with fresh_database(stack, "api") as db:
        settings = Settings(
            data_dir=shipped_data, checkpoint=tiny_checkpoint, engine="torch", beam_width=20, batch_max_size=8,
            batch_max_wait_ms=20, api_keys=digest(KEY), admin_token_sha256=digest(ADMIN),
            kafka_bootstrap=stack.services["kafka"].url, impressions_topic=topics[0], outcomes_topic=topics[1],
            spool_dir=tmp_path_factory.mktemp("spool"), database_url=db, registry_poll_s=0.5,
        )  # fmt: skip
        with ApiServer(settings) as server:
            yield server, settings


def consume(settings: Settings, topic: str, want: int, timeout_s: float = 30.0) -> list[bytes]:
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=f"t-{uuid.uuid4().hex[:8]}",
                             auto_offset_reset="earliest", consumer_timeout_ms=1000,
                             session_timeout_ms=6000, heartbeat_interval_ms=1000)  # fmt: skip
    values, deadline = [], time.monotonic() + timeout_s
    try:
        while len(values) < want and time.monotonic() < deadline:
            values += [m.value for m in consumer]
    finally:
        consumer.close()
    return values


# ---------------------------------------------------------------- recommend


def test_recommend_returns_k_catalog_items_ranked(env, shipped_data):
    server, _ = env
    history = histories(shipped_data, 1)[0]
    with server.client() as c:
        r = c.post("/v1/recommend", json={"user_id": "u-rank", "history": history, "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    items = body["items"]
    assert [i["rank"] for i in items] == list(range(1, 8))
    assert len({i["item_id"] for i in items}) == 7
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
    catalog = json.loads((shipped_data / "items.json").read_text())
    assert all(i["item_id"] in catalog and i["title"] == catalog[i["item_id"]]["title"] for i in items)
    assert all(i["sid"].startswith("<a_") for i in items)
    assert body["model_version"] and len(body["request_id"]) == 32


def test_empty_history_and_exclude_history(env, shipped_data):
    server, _ = env
    history = histories(shipped_data, 3)[2]
    with server.client() as c:
        empty = c.post("/v1/recommend", json={"user_id": "u-empty", "history": [], "k": 10})
        kept = c.post("/v1/recommend", json={"user_id": "u-ex", "history": history, "k": 50}).json()["items"]
        dropped = c.post("/v1/recommend", json={"user_id": "u-ex", "history": history, "k": 50,
                                                "exclude_history": True}).json()["items"]  # fmt: skip
    assert empty.status_code == 200 and len(empty.json()["items"]) == 10
    assert not {i["item_id"] for i in dropped} & set(history)
    assert len(dropped) == 50
    # Excluding only removes items: the others keep their order.
    rest = [i["item_id"] for i in kept if i["item_id"] not in history]
    assert [i["item_id"] for i in dropped][: len(rest)] == rest


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        ({"user_id": "u", "history": ["no-such-item", "3112", "nope"], "k": 5}, ["no-such-item", "nope"]),
        ({"user_id": "u", "history": [], "k": 0}, "greater than or equal to 1"),
        ({"user_id": "u", "history": [], "k": 51}, "less than or equal to 50"),
        ({"user_id": "u", "history": ["3112"] * 201, "k": 5}, "at most 200"),
        ({"user_id": "u", "history": [], "k": "10"}, "valid integer"),
        ({"user_id": "u", "history": [3112], "k": 5}, "valid string"),
        ({"history": [], "k": 5}, "Field required"),
        ({"user_id": "u", "history": [], "k": 5, "kk": 1}, "Extra inputs"),
    ],
)
def test_bad_requests_get_422_with_the_reason(env, body, expect):
    server, _ = env
    with server.client() as c:
        r = c.post("/v1/recommend", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    if isinstance(expect, list):
        assert detail["unknown_item_ids"] == expect
    else:
        assert expect in json.dumps(detail)


def test_malformed_json_is_a_4xx(env):
    server, _ = env
    with server.client() as c:
        r = c.post("/v1/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


# ---------------------------------------------------------------- auth


def test_keys_and_scopes(env):
    server, _ = env
    body = {"user_id": "u-auth", "history": [], "k": 3}
    with server.client(None) as anonymous, server.client("wrong") as wrong, server.client(ADMIN) as admin:
        with server.client() as storefront:
            assert anonymous.post("/v1/recommend", json=body).status_code == 401
            refused = wrong.post("/v1/recommend", json=body)
            assert refused.status_code == 401 and refused.json()["detail"] == "missing or invalid credentials"
            assert admin.post("/v1/recommend", json=body).status_code == 403
            assert storefront.get("/v1/admin/model").status_code == 403
            assert admin.get("/v1/admin/model").status_code == 200
            assert anonymous.get("/healthz").status_code == 200  # operations routes stay open


# ---------------------------------------------------------------- streams


def test_every_served_list_is_an_impression_on_kafka(env, shipped_data):
    server, settings = env
    served = {}
    with server.client() as c:
        for n, history in enumerate(histories(shipped_data, 12)):
            body = c.post("/v1/recommend", json={"user_id": f"u-imp-{n}", "history": history, "k": 5,
                                                 "segment": "returning"}).json()  # fmt: skip
            served[body["request_id"]] = (f"u-imp-{n}", history, [i["item_id"] for i in body["items"]])
    found = {}
    for raw in consume(settings, settings.impressions_topic, want=100, timeout_s=15):
        imp = parse_impression(raw)
        found[imp.request_id] = (imp.user_id, list(imp.history), [i.item_id for i in imp.items], imp.segment)
    for rid, (user, history, items) in served.items():
        assert found[rid] == (user, history, items, "returning")


def test_events_single_and_batch_reach_kafka_invalid_ones_do_not(env):
    server, settings = env
    tag = uuid.uuid4().hex[:6]
    now = datetime.now(UTC).replace(microsecond=0)  # the API refuses outcomes older than RECAST_EVENT_MAX_AGE_S

    def outcome(n: int, kind: str = "click") -> dict:
        return {"event_id": f"{tag}-{n}", "user_id": "u-ev", "item_id": "3112", "type": kind,
                "ts": now.isoformat(), "request_id": None}  # fmt: skip

    with server.client() as c:
        one = c.post("/v1/events", json=outcome(0))
        batch = c.post("/v1/events", json=[outcome(1, "purchase"), outcome(2, "add_to_cart")])
        bad = c.post("/v1/events", json=[outcome(3), {**outcome(4), "type": "like"}])
        naive = c.post("/v1/events", json={**outcome(5), "ts": now.replace(tzinfo=None).isoformat()})
        empty = c.post("/v1/events", json=[])
    assert (one.status_code, one.json()) == (202, {"accepted": 1})
    assert (batch.status_code, batch.json()) == (202, {"accepted": 2})
    assert bad.status_code == 422 and "'click', 'add_to_cart' or 'purchase'" in bad.text
    assert naive.status_code == 422 and "timezone" in naive.text
    assert empty.status_code == 422
    got = {o.event_id: o.type for o in map(parse_outcome, consume(settings, settings.outcomes_topic, want=3))}
    mine = {k: v for k, v in got.items() if k.startswith(tag)}
    assert mine == {f"{tag}-0": "click", f"{tag}-1": "purchase", f"{tag}-2": "add_to_cart"}


# ---------------------------------------------------------------- batching, health, metrics


def test_micro_batched_lists_equal_one_by_one(env, shipped_data):
    server, _ = env
    bodies = [{"user_id": f"u-mb-{n}", "history": h, "k": 10} for n, h in enumerate(histories(shipped_data, 24))]
    with server.client() as c:
        alone = [c.post("/v1/recommend", json=b).json()["items"] for b in bodies]
        before = _metric(c.get("/metrics").text, "recast_batch_size_count")
        with ThreadPoolExecutor(12) as pool:
            together = list(pool.map(lambda b: c.post("/v1/recommend", json=b).json()["items"], bodies))
        batches = _metric(c.get("/metrics").text, "recast_batch_size_count") - before
    assert together == alone  # same items, order and scores whoever shares the batch
    assert batches < len(bodies)  # concurrent requests did share decodes


def test_ready_and_metrics(env):
    server, _ = env
    with server.client(None) as c:
        ready = c.get("/readyz")
        text = c.get("/metrics").text
    assert ready.status_code == 200 and ready.json()["broker_up"] is True
    for name in ("recast_request_seconds_bucket", "recast_batch_size_bucket", "recast_engine_seconds_bucket",
                 "recast_impressions_total", 'recast_publisher_records_total{outcome="published"}',
                 "recast_spool_pending", "recast_model_info{"):  # fmt: skip
        assert name in text, name


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


# ---------------------------------------------------------------- hot-swap


def test_three_swaps_under_load_fail_no_request(env, tmp_path, shipped_data, tiny_checkpoint):
    server, _ = env
    variants = [variant(tiny_checkpoint, tmp_path / f"v{s}", shipped_data, seed=s) for s in (1, 2, 3)]
    bodies = [{"user_id": f"u-sw-{n}", "history": h, "k": 10} for n, h in enumerate(histories(shipped_data, 40))]
    statuses, versions, stop = [], set(), False

    def hammer(client_id: int) -> None:
        with server.client() as c:
            n = client_id
            while not stop:
                r = c.post("/v1/recommend", json=bodies[n % len(bodies)])
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.add(r.json()["model_version"])
                n += 4

    with ThreadPoolExecutor(4) as pool, server.client(ADMIN) as admin:
        load = [pool.submit(hammer, i) for i in range(4)]
        swaps = []
        try:
            for path in variants:
                time.sleep(0.5)
                swaps.append(admin.post("/v1/admin/model", json={"path": str(path)}))
            time.sleep(0.5)
        finally:
            stop = True
            for f in load:
                f.result()
        status = admin.get("/v1/admin/model").json()
    assert [s.status_code for s in swaps] == [200, 200, 200], [s.text for s in swaps]
    assert statuses and set(statuses) == {200}, f"{len(statuses)} requests, statuses {set(statuses)}"
    assert status["version"] == swaps[-1].json()["version"]
    assert status["last_swap"]["ok"] and status["last_swap"]["seconds"] < 30
    assert {s.json()["version"] for s in swaps} <= versions | {status["version"]}


def test_a_corrupt_or_unregistered_checkpoint_is_refused_and_the_old_keeps_serving(env, tmp_path, shipped_data,
                                                                                      tiny_checkpoint):  # fmt: skip
    server, _ = env
    bad = variant(tiny_checkpoint, tmp_path / "bad", shipped_data, seed=7)
    weights = bad / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit of one weight
    weights.write_bytes(bytes(data))
    good = variant(tiny_checkpoint, tmp_path / "good", shipped_data, seed=8)
    with server.client(ADMIN) as admin, server.client() as c:
        before = admin.get("/v1/admin/model").json()["version"]
        corrupt = admin.post("/v1/admin/model", json={"path": str(bad)})
        wrong_hash = admin.post("/v1/admin/model", json={"path": str(good), "sha256": "0" * 64})
        missing = admin.post("/v1/admin/model", json={"path": str(tmp_path / "nothing")})
        served = c.post("/v1/recommend", json={"user_id": "u-bad", "history": [], "k": 3})
    assert corrupt.status_code == 409 and "sha256 does not match" in corrupt.json()["detail"]["error"]
    assert wrong_hash.status_code == 409 and "not the registered" in wrong_hash.json()["detail"]["error"]
    assert missing.status_code == 409
    assert served.status_code == 200 and served.json()["model_version"] == before


def test_the_registry_watcher_swaps_to_the_active_model_and_back(env, tmp_path, shipped_data, tiny_checkpoint):
    server, settings = env
    new = variant(tiny_checkpoint, tmp_path / "registered", shipped_data, seed=11)
    engine = create_engine(settings.database_url)

    def activate_and_wait(checkpoint) -> tuple[str, str | None]:
        with engine.begin() as conn:
            version = activate(conn, register(conn, checkpoint).version).version
        deadline, served = time.monotonic() + 30, None
        with server.client() as c:
            while time.monotonic() < deadline and served != version:
                served = c.post("/v1/recommend", json={"user_id": "u-reg", "history": [], "k": 3}).json()[
                    "model_version"
                ]
                time.sleep(0.2)
        return version, served

    try:
        version, served = activate_and_wait(new)
        assert served == version  # the registry's new active model is served
        version, served = activate_and_wait(tiny_checkpoint)
        assert served == version  # and activating the old one again rolls back
    finally:
        engine.dispose()
