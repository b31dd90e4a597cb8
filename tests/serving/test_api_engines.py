"""The API on the vLLM engine serves the torch engine's lists (the service without Kafka or Postgres:
tests/serving/test_degraded.py)."""

from __future__ import annotations

import pytest

from ops.stack.servers import free_port
from schemas.settings import Settings
from serving.auth import digest
from tests.support.api import KEY, ApiServer
from tests.support.data import histories

pytestmark = pytest.mark.slow


def settings_for(shipped_data, checkpoint, spool, **overrides) -> Settings:
    base = dict(data_dir=shipped_data, checkpoint=checkpoint, beam_width=20, api_keys=digest(KEY), spool_dir=spool,
                kafka_bootstrap=f"127.0.0.1:{free_port()}", registry_poll_s=0, publisher_timeout_ms=500)  # fmt: skip
    return Settings(**{**base, **overrides})


def test_vllm_and_torch_engines_serve_the_same_lists(tmp_path, shipped_data, tiny_checkpoint):
    bodies = [{"user_id": f"u{n}", "history": h, "k": 10} for n, h in enumerate(histories(20))]
    bodies.append({"user_id": "u-empty", "history": [], "k": 10})
    served = {}
    for engine in ("torch", "vllm"):
        settings = settings_for(shipped_data, tiny_checkpoint, tmp_path / engine, engine=engine)
        with ApiServer(settings) as server, server.client() as c:
            served[engine] = [c.post("/v1/recommend", json=b).json()["items"] for b in bodies]
    for ours, theirs in zip(served["torch"], served["vllm"], strict=True):
        assert [i["item_id"] for i in ours] == [i["item_id"] for i in theirs]
        assert max(abs(a["score"] - b["score"]) for a, b in zip(ours, theirs)) < 1e-4
