"""The API on the vLLM engine serves the torch engine's lists; with Kafka down it still serves, and
spools its impressions (counted in /metrics)."""

from __future__ import annotations

import time

import pytest

from ops.stack.servers import free_port
from schemas.settings import Settings
from serving.auth import digest
from tests.serving.api_server import KEY, ApiServer
from tests.serving.test_api import _metric, histories

pytestmark = pytest.mark.slow


def settings_for(shipped_data, checkpoint, spool, **overrides) -> Settings:
    base = dict(data_dir=shipped_data, checkpoint=checkpoint, beam_width=20, api_keys=digest(KEY), spool_dir=spool,
                kafka_bootstrap=f"127.0.0.1:{free_port()}", registry_poll_s=0, publisher_timeout_ms=500)  # fmt: skip
    return Settings(**{**base, **overrides})


def test_vllm_and_torch_engines_serve_the_same_lists(tmp_path, shipped_data, tiny_checkpoint):
    bodies = [{"user_id": f"u{n}", "history": h, "k": 10} for n, h in enumerate(histories(shipped_data, 20))]
    bodies.append({"user_id": "u-empty", "history": [], "k": 10})
    served = {}
    for engine in ("torch", "vllm"):
        settings = settings_for(shipped_data, tiny_checkpoint, tmp_path / engine, engine=engine)
        with ApiServer(settings) as server, server.client() as c:
            served[engine] = [c.post("/v1/recommend", json=b).json()["items"] for b in bodies]
    for ours, theirs in zip(served["torch"], served["vllm"], strict=True):
        assert [i["item_id"] for i in ours] == [i["item_id"] for i in theirs]
        assert max(abs(a["score"] - b["score"]) for a, b in zip(ours, theirs)) < 1e-4


def test_with_kafka_down_lists_are_served_and_impressions_spooled(tmp_path, shipped_data, tiny_checkpoint):
    settings = settings_for(shipped_data, tiny_checkpoint, tmp_path / "spool")  # nothing listens on that port
    with ApiServer(settings) as server, server.client() as c:
        codes = [c.post("/v1/recommend", json={"user_id": f"u{n}", "history": [], "k": 5}).status_code
                 for n in range(15)]  # fmt: skip
        ready = c.get("/readyz")
        deadline = time.monotonic() + 15  # the publisher moves its queue to the spool in the background
        while time.monotonic() < deadline:
            metrics = c.get("/metrics").text
            if _metric(metrics, "recast_spool_pending") >= 15:
                break
            time.sleep(0.2)
    assert codes == [200] * 15
    assert ready.status_code == 503 and ready.json()["reasons"] == ["Kafka unreachable"]
    assert _metric(metrics, "recast_impressions_total") == 15
    assert _metric(metrics, 'recast_publisher_records_total{outcome="spooled"}') == 15
    assert _metric(metrics, "recast_spool_pending") == 15
    assert _metric(metrics, 'recast_publisher_records_total{outcome="published"}') == 0
