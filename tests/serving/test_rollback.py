"""Rolling back through the registry while shoppers are served: the admin route and `recast rollback`'s path,
over real HTTP, with the real load generator running, against a real Postgres."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from learner import registry
from ops.bench.variants import perturbed_copy as variant
from tests.support.api import ADMIN, KEY, ApiServer, api_settings, metric
from tests.support.databases import fresh_database
from tests.support.paths import ROOT
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory, shipped_data, tiny_checkpoint):
    """An API whose registry serves B, published after A; both are verified checkpoints."""
    second = variant(tiny_checkpoint, tmp_path_factory.mktemp("b") / "b", shipped_data, seed=21)
    with fresh_database(stack, "rollback") as db:
        engine = create_engine(db)
        with engine.begin() as conn:
            a = registry.register(conn, tiny_checkpoint).version
            registry.activate(conn, a, actor="test", reason="first model")
            b = registry.register(conn, second).version
            registry.activate(conn, b, actor="refresh run 1", reason="gate passed", action="publish")
        settings = api_settings(stack, shipped_data, tmp_path_factory.mktemp("spool"), beam_width=20, database_url=db,
                                registry_poll_s=0.3)  # fmt: skip
        with ApiServer(settings) as server:
            wait_served(server, b)
            yield server, engine, a, b
        engine.dispose()


def served_version(server) -> str | None:
    with server.client(ADMIN) as c:
        return c.get("/v1/admin/model").json()["version"]


def wait_served(server, version: str) -> None:
    wait_for(lambda: served_version(server) == version, f"the service serving {version}", timeout=60,
             state=lambda: f"it serves {served_version(server)}")  # fmt: skip


def wait_impressions(server, more: int) -> None:
    """Until the service has served ``more`` lists beyond what it had served when called (its /metrics)."""
    start = metric(server.metrics(), "recast_impressions_total")
    wait_for(lambda: metric(server.metrics(), "recast_impressions_total") >= start + more,
             f"{more} lists served under the load generator", timeout=60)  # fmt: skip


def loadgen(server, out: Path, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ops.bench.loadgen", "--url", f"{server.url}/v1/recommend", "--key", KEY,
         "--concurrency", "8", "--warmup", "0", "--duration", str(seconds), "--json", str(out)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_rollbacks_under_load_fail_no_request_and_leave_a_trail(env, tmp_path):
    server, engine, a, b = env
    load = loadgen(server, tmp_path / "load.json", seconds=12)
    try:
        wait_impressions(server, 30)  # the load is on before the first rollback
        # The admin route: verify, load and warm A beside B, swap, then record it.
        with server.client(ADMIN) as c:
            back = c.post("/v1/admin/rollback", json={"reason": "B lost conversions", "actor": "oncall"})
        assert back.status_code == 200, back.text
        assert back.json()["version"] == a
        with engine.connect() as conn:
            assert registry.active(conn).version == a
            last = registry.activations(conn, 1)[0]
        assert (last["action"], last["version"], last["previous_version"], last["actor"], last["reason"]) == (
            "rollback", a, b, "oncall", "B lost conversions")
        # `recast rollback --to B`'s path: the registry changes, the watcher swaps.
        with engine.begin() as conn:
            registry.rollback(conn, to=b, actor="oncall", reason="false alarm")
        wait_served(server, b)
    finally:
        _, err = load.communicate(timeout=120)
    result = json.loads((tmp_path / "load.json").read_text())
    assert load.returncode == 0, err
    assert result["errors"] == {} and result["answered"] == result["requests"] > 50, result


def test_refusals_change_nothing(env, tmp_path):
    server, engine, a, b = env
    wait_served(server, b)
    with server.client(ADMIN) as c:
        unknown = c.post("/v1/admin/rollback", json={"reason": "x", "to": "nope"})
        same = c.post("/v1/admin/rollback", json={"reason": "x", "to": b})
        empty = c.post("/v1/admin/rollback", json={"reason": ""})
    with server.client(KEY) as c:
        storefront = c.post("/v1/admin/rollback", json={"reason": "x"})
    assert unknown.status_code == 404 and "no model 'nope'" in unknown.json()["detail"]
    assert same.status_code == 409 and "already the active model" in same.json()["detail"]
    assert empty.status_code == 422
    assert storefront.status_code == 403
    with engine.begin() as conn:
        registry.reject(conn, a, "test: the gate said no")
    with server.client(ADMIN) as c:
        rejected = c.post("/v1/admin/rollback", json={"reason": "x", "to": a})
    assert rejected.status_code == 409 and "rejected" in rejected.json()["detail"]
    with engine.connect() as conn:
        assert registry.active(conn).version == b
    assert served_version(server) == b
