"""The API over real HTTP against the real stack: uvicorn, the torch engine, Tansu, Postgres.

One server per module (the model loads once); every test uses its own users and request ids.
Waits are on what the server shows (responses, /metrics, what a consumer reads), bounded.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine

from learner.registry import activate, register
from ops.bench.variants import perturbed_copy as variant
from schemas.api import MAX_EVENTS_PER_CALL
from schemas.events import parse_impression, parse_outcome
from serving.auth import digest
from tests.support.api import ADMIN, ApiServer, api_settings, metric
from tests.support.data import histories
from tests.support.databases import fresh_database
from tests.support.kafka import consume
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory, shipped_data, tiny_checkpoint):
    with fresh_database(stack, "api") as db:
        settings = api_settings(stack, shipped_data, tmp_path_factory.mktemp("spool"), checkpoint=tiny_checkpoint,
                                beam_width=20, batch_max_size=8, batch_max_wait_ms=20, database_url=db,
                                registry_poll_s=0.5, beam_cache_entries=0)  # fmt: skip
        # No cache of beams here: these tests compare decodes (alone against batched, before against after a swap),
        # and a cache would answer the second from the first. tests/serving/test_beam_cache.py covers it.
        with ApiServer(settings) as server:
            yield server, settings


# ---------------------------------------------------------------- recommend


def test_recommend_returns_k_catalog_items_ranked(env, shipped_data):
    server, _ = env
    history = histories(1)[0]
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
    history = histories(3)[2]
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
            outside = [admin.post("/v1/recommend", json=body), storefront.get("/v1/admin/model")]
            assert admin.get("/v1/admin/model").status_code == 200
            assert anonymous.get("/healthz").status_code == 200  # operations routes stay open
    # A known key outside its scope: 403, and the body tells nothing (not the scope wanted, nor whose key it is).
    assert [r.status_code for r in outside] == [403, 403]
    assert [r.json()["detail"] for r in outside] == ["not allowed"] * 2
    assert all("www-authenticate" not in r.headers for r in outside)


def test_recast_keys_new_makes_a_key_the_service_accepts(env):
    """`recast keys new` prints a key and its digest; a service configured with the digest takes the key."""
    from serving.auth import KeyRing, Scope
    from tests.support.cli import recast

    printed = [dict(line.split(":", 1) for line in recast("keys", "new", *flag).stdout.splitlines()[:2])
               for flag in ((), ("--admin",))]  # fmt: skip
    (key, dig), (admin_key, admin_dig) = ((p["key"].strip(), p["digest"].strip()) for p in printed)
    assert len(key) >= 43 and key != admin_key and dig == digest(key) and admin_dig == digest(admin_key)
    ring = KeyRing(frozenset([dig]), admin_dig)
    assert ring.scope_of(key) is Scope.STOREFRONT and ring.scope_of(admin_key) is Scope.ADMIN
    assert "RECAST_ADMIN_TOKEN_SHA256" in recast("keys", "new", "--admin").stdout
    assert "RECAST_API_KEYS" in recast("keys", "new").stdout


# ---------------------------------------------------------------- streams


def test_every_served_list_is_an_impression_on_kafka(env, shipped_data):
    server, settings = env
    served = {}
    with server.client() as c:
        for n, history in enumerate(histories(12)):
            body = c.post("/v1/recommend", json={"user_id": f"u-imp-{n}", "history": history, "k": 5,
                                                 "segment": "returning"}).json()  # fmt: skip
            served[body["request_id"]] = (f"u-imp-{n}", history, [i["item_id"] for i in body["items"]])
    records = consume(settings.kafka_bootstrap, [settings.impressions_topic],
                      lambda rs: set(served) <= {parse_impression(r.value).request_id for r in rs},
                      f"the {len(served)} served lists as impressions")  # fmt: skip
    found = {}
    for imp in (parse_impression(r.value) for r in records):
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
    accepted = {f"{tag}-0", f"{tag}-1", f"{tag}-2"}
    records = consume(settings.kafka_bootstrap, [settings.outcomes_topic],
                      lambda rs: accepted <= {parse_outcome(r.value).event_id for r in rs}, "the 3 accepted events")
    got = {o.event_id: o.type for o in map(parse_outcome, (r.value for r in records))}
    mine = {k: v for k, v in got.items() if k.startswith(tag)}
    assert mine == {f"{tag}-0": "click", f"{tag}-1": "purchase", f"{tag}-2": "add_to_cart"}  # none refused got in


def test_events_take_up_to_1000_per_call(env):
    server, settings = env
    tag = uuid.uuid4().hex[:6]
    batch = [{"event_id": f"{tag}-{n}", "user_id": f"u-cap-{n % 7}", "item_id": "3112", "type": "click",
              "ts": datetime.now(UTC).isoformat()} for n in range(MAX_EVENTS_PER_CALL + 1)]  # fmt: skip
    with server.client() as c:
        over = c.post("/v1/events", json=batch)
        full = c.post("/v1/events", json=batch[:MAX_EVENTS_PER_CALL])
    assert MAX_EVENTS_PER_CALL == 1000
    assert over.status_code == 422 and "1000" in over.text
    assert (full.status_code, full.json()) == (202, {"accepted": 1000})
    records = consume(settings.kafka_bootstrap, [settings.outcomes_topic],
                      lambda rs: sum(parse_outcome(r.value).event_id.startswith(tag) for r in rs) >= 1000,
                      "the 1000 accepted events")  # fmt: skip
    ids = [o.event_id for o in map(parse_outcome, (r.value for r in records)) if o.event_id.startswith(tag)]
    assert sorted(ids) == sorted(e["event_id"] for e in batch[:MAX_EVENTS_PER_CALL])  # the refused call sent none


# ---------------------------------------------------------------- batching, health, metrics


def test_micro_batched_lists_equal_one_by_one(env):
    server, settings = env
    bodies = [{"user_id": f"u-mb-{n}", "history": h, "k": 10} for n, h in enumerate(histories(24))]
    with server.client() as c:
        alone = [c.post("/v1/recommend", json=b).json()["items"] for b in bodies]
        before = metric(server.metrics(), "recast_batch_size_count")
        with ThreadPoolExecutor(len(bodies)) as pool:
            # The decode thread is held until every request is queued behind it: they must share batches.
            with server.decoder_held():
                pending = [pool.submit(lambda b: c.post("/v1/recommend", json=b).json()["items"], b) for b in bodies]
                queue = server.services.batcher._queue
                wait_for(lambda: queue.qsize() >= len(bodies) - settings.batch_max_size,
                         "all but one batch of the concurrent requests queued behind the decoder",
                         state=queue.qsize)  # fmt: skip
            together = [f.result() for f in pending]
        batches = metric(server.metrics(), "recast_batch_size_count") - before
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
                 "recast_spool_pending", "recast_model_info{", "recast_beam_cache_entries"):  # fmt: skip
        assert name in text, name


# ---------------------------------------------------------------- hot-swap


def test_three_swaps_under_load_fail_no_request(env, tmp_path, shipped_data, tiny_checkpoint):
    """Four clients keep recommending while three checkpoints are swapped in one after another. Each swap
    is posted while requests are in flight (seen, not assumed) and after more were answered since the last
    one; the next starts only once the swapped-in version was served (the wait fails otherwise).
    Not one request fails, those in flight at a swap included."""
    server, _ = env
    variants = [variant(tiny_checkpoint, tmp_path / f"v{s}", shipped_data, seed=s) for s in (1, 2, 3)]
    bodies = [{"user_id": f"u-sw-{n}", "history": h, "k": 10} for n, h in enumerate(histories(40))]
    answered: dict[int, tuple[int, str | None]] = {}  # request number -> (status, model version)
    inflight: set[int] = set()
    numbers, lock, stop = itertools.count(), threading.Lock(), False

    def hammer(client_id: int) -> None:
        with server.client() as c:
            n = client_id
            while not stop:
                number = next(numbers)
                with lock:
                    inflight.add(number)
                r = c.post("/v1/recommend", json=bodies[n % len(bodies)])
                with lock:
                    inflight.discard(number)
                    answered[number] = (r.status_code, r.json()["model_version"] if r.status_code == 200 else None)
                n += 4

    def snapshot() -> set[int]:
        with lock:
            return set(inflight)

    def versions_since(n: int) -> list[str | None]:
        with lock:
            return [version for _, version in list(answered.values())[n:]]

    with ThreadPoolExecutor(4) as pool, server.client(ADMIN) as admin:
        load = [pool.submit(hammer, i) for i in range(4)]
        swaps, caught = [], []
        try:
            for path in variants:
                done = len(answered)
                wait_for(lambda n=done: len(answered) >= n + 8 or any(f.done() for f in load),
                         "8 more requests answered under load before the swap")  # fmt: skip
                caught.append(wait_for(snapshot, "a request in flight to swap under"))
                swaps.append(admin.post("/v1/admin/model", json={"path": str(path)}))
                version = swaps[-1].json().get("version")
                after = len(answered)
                wait_for(lambda v=version, n=after: v in versions_since(n) or any(f.done() for f in load),
                         f"the swapped-in {version} served under load")  # fmt: skip
        finally:
            stop = True
            for f in load:
                f.result()
        status = admin.get("/v1/admin/model").json()
    assert [s.status_code for s in swaps] == [200, 200, 200], [s.text for s in swaps]
    statuses = [code for code, _ in answered.values()]
    assert statuses and set(statuses) == {200}, f"{len(statuses)} requests, statuses {set(statuses)}"
    assert all(answered[n][0] == 200 for numbers_at_swap in caught for n in numbers_at_swap)
    assert status["version"] == swaps[-1].json()["version"]
    assert status["last_swap"]["ok"] and status["last_swap"]["seconds"] < 30


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

    def activate_and_wait(checkpoint) -> tuple[str, str]:
        with engine.begin() as conn:
            version = activate(conn, register(conn, checkpoint).version).version
        with server.client() as c:

            def served() -> str | None:
                r = c.post("/v1/recommend", json={"user_id": "u-reg", "history": [], "k": 3})
                return r.json()["model_version"] if r.json()["model_version"] == version else None

            return version, wait_for(served, f"the registry's active {version} served", timeout=30)

    try:
        version, served = activate_and_wait(new)
        assert served == version  # the registry's new active model is served
        version, served = activate_and_wait(tiny_checkpoint)
        assert served == version  # and activating the old one again rolls back
    finally:
        engine.dispose()
