"""Admission control over real HTTP: a full decoder queue sheds with 503 + Retry-After (and every admitted
request is answered correctly), and a key over its rate limit gets 429 + Retry-After while others go on."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from serving.auth import digest
from tests.support.api import KEY, ApiServer, api_settings

pytestmark = pytest.mark.slow
LIMITED = "limited-storefront-key"


@pytest.fixture(scope="module")
def server(stack, tmp_path_factory, shipped_data, tiny_checkpoint):
    settings = api_settings(
        stack, shipped_data, tmp_path_factory.mktemp("spool"), partitions=1, checkpoint=tiny_checkpoint,
        beam_width=50, batch_max_size=1, batch_max_wait_ms=0, queue_max=4,
        api_keys=f"shop:{digest(KEY)},small:{digest(LIMITED)}", rate_limits="small=3/minute", registry_poll_s=0,
    )  # fmt: skip
    with ApiServer(settings) as s:
        yield s


def metric(server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_a_full_queue_sheds_with_503_and_retry_after(server):
    body = {"user_id": "u-load", "history": ["3112", "2697"], "k": 50}

    def one(_):
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
            return c.post("/v1/recommend", json=body)

    with ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(one, range(96)))
    statuses = {r.status_code for r in answers}
    ok = [r for r in answers if r.status_code == 200]
    shed = [r for r in answers if r.status_code == 503]
    assert statuses <= {200, 503}, statuses
    assert ok and shed, f"{len(ok)} served, {len(shed)} shed: 96 requests on 48 connections should do both"
    assert all(int(r.headers["retry-after"]) >= 1 and "queue is full" in r.json()["detail"] for r in shed)
    assert all(len(r.json()["items"]) == 50 for r in ok)
    assert metric(server, "recast_shed_total") >= len(shed)


def test_a_key_over_its_rate_limit_gets_429_and_others_do_not(server):
    body = {"user_id": "u-rate", "history": [], "k": 3}
    with server.client(LIMITED) as small, server.client(KEY) as shop:
        first = [small.post("/v1/recommend", json=body).status_code for _ in range(3)]
        over = small.post("/v1/recommend", json=body)
        other = shop.post("/v1/recommend", json=body)
    assert first == [200, 200, 200]
    assert over.status_code == 429 and 1 <= int(over.headers["retry-after"]) <= 60
    assert "'small'" in over.json()["detail"] and LIMITED not in over.text  # the key's name, never the key
    assert other.status_code == 200
    assert metric(server, 'recast_rate_limited_total{key="small"}') == 1
