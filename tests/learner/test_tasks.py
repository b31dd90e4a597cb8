"""The refresh task through real Celery workers (``recast worker`` processes), the stack's real Redis and a real
Postgres: no eager mode. Faults are forced, not hoped for: a test that must catch a refresh mid-flight holds an
EXCLUSIVE lock on ``model_activations``, which only publishing writes, so the refresh stops inside its publishing
transaction (the candidate registered but not committed) until the test lets go; every wait is on state the test
can see (log lines, run rows, pg_locks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import create_engine, select, text

from learner import registry
from learner.celery_app import QUEUE, celery_config
from learner.refresh.run import LOCK_KEY
from schemas.tables import TrainingRun
from tests.support.groups import DAY0, seed_groups, shipped_rows
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
RUNS = TrainingRun.__table__
_redis_db = iter(range(1, 16))  # a Redis database of its own per test: no task reaches another test's worker


class Loop:
    """Settings in the environment of worker processes, a client app, and the run rows."""

    def __init__(self, settings, stack, tmp_path: Path):
        redis = stack.services["redis"].url.rsplit("/", 1)[0] + f"/{next(_redis_db)}"
        self.settings = settings.model_copy(update={"redis_url": redis})
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("RECAST_")},
                    "PYTHONPATH": str(ROOT), "RECAST_DATABASE_URL": self.settings.database_url,
                    "RECAST_REDIS_URL": redis, "RECAST_DATA_DIR": str(self.settings.data_dir),
                    "RECAST_RUN_DIR": str(self.settings.run_dir), "RECAST_GATE_SPLIT": str(self.settings.gate_split),
                    "RECAST_REFRESH_PERIOD_S": str(self.settings.refresh_period_s), "RECAST_BEAM_WIDTH": "20",
                    "RECAST_REFRESH_MIN_GROUPS": "20", "RECAST_REFRESH_RL_STEPS": "2", "RECAST_REFRESH_SFT_EPOCHS": "1",
                    "RECAST_GATE_TOLERANCE": "0.5"}  # fmt: skip
        self.client = Celery("recast-test", set_as_current=False)
        self.client.conf.update(celery_config(self.settings))
        self.engine = create_engine(self.settings.database_url)
        self.tmp, self.workers = tmp_path, []

    def worker(self) -> subprocess.Popen:
        log = self.tmp / f"worker-{len(self.workers)}.log"
        argv = [sys.executable, "-m", "ops.cli", "worker", "--name", f"t{uuid.uuid4().hex[:6]}@%h"]
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        self.workers.append(proc)
        wait_for(lambda: " ready." in log.read_text(errors="replace") or proc.poll() is not None, "worker ready",
                 timeout=120)
        assert proc.poll() is None, log.read_text()[-3000:]
        return proc

    def trigger(self, **kwargs):
        return self.client.send_task("learner.tasks.refresh_policy", kwargs={"trigger": "test", **kwargs},
                                     queue=QUEUE)  # fmt: skip

    def runs(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(RUNS).order_by(RUNS.c.id))]

    def run_in(self, phase: str) -> dict | None:
        return next((r for r in self.runs() if r["status"] == "running" and r["phase"] == phase), None)

    def advisory_locks(self) -> int:
        with self.engine.connect() as conn:
            return conn.scalar(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :low"),
                               {"low": LOCK_KEY & 0xFFFFFFFF})  # fmt: skip

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        self.engine.dispose()


@pytest.fixture
def loop(gated, served, stack, tmp_path, shipped_data):
    seed_groups(gated.database_url, shipped_rows(shipped_data, 60), DAY0)
    made = Loop(gated, stack, tmp_path)
    yield made
    made.close()


class PublishingHeld:
    """An open transaction holding EXCLUSIVE on model_activations: a refresh that publishes waits inside its
    publishing transaction (nothing else of a refresh touches that table)."""

    def __init__(self, engine):
        self.conn = engine.connect()
        self.conn.execute(text("LOCK TABLE model_activations IN EXCLUSIVE MODE"))

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def test_a_worker_killed_mid_refresh_leaves_serving_alone_frees_the_lock_and_the_next_run_succeeds(loop, served):
    worker = loop.worker()
    held = PublishingHeld(loop.engine)
    try:
        loop.trigger()
        killed = wait_for(lambda: loop.run_in("publishing"), "a refresh blocked at publishing", timeout=300)
        assert loop.advisory_locks() == 1
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool child, mid-transaction
        worker.wait(timeout=30)
        wait_for(lambda: loop.advisory_locks() == 0, "Postgres freeing the dead worker's refresh lock", timeout=60)
    finally:
        held.release()
    with loop.engine.connect() as conn:
        assert registry.active(conn).version == served  # nothing was published
        assert [r.version for r in registry.listing(conn)] == [served]  # not even registered: it rolled back
    loop.worker()
    result = loop.trigger().get(timeout=300)
    assert (result["status"], result["decision"]) == ("succeeded", "published"), result
    dead = next(r for r in loop.runs() if r["id"] == killed["id"])
    assert dead["status"] == "failed" and "worker stopped before finishing" in dead["error"]


def test_two_refreshes_at_once_one_runs_one_is_refused(loop):
    loop.worker()
    loop.worker()
    held = PublishingHeld(loop.engine)
    try:
        first = loop.trigger()
        running = wait_for(lambda: loop.run_in("publishing"), "the first refresh at publishing", timeout=300)
        second = loop.trigger().get(timeout=120)  # the other worker takes it while the first holds the lock
    finally:
        held.release()
    assert second["status"] == "refused"
    assert second["reason"] == f"another refresh holds the lock (run {running['id']})"
    assert first.get(timeout=300)["status"] == "succeeded"
    assert sorted(r["status"] for r in loop.runs()) == ["refused", "succeeded"]


def test_a_candidate_that_fails_the_gate_is_registered_rejected_and_never_served(loop, served):
    loop.worker()
    result = loop.trigger(gate_tolerance=-1.0).get(timeout=300)  # it would have to gain a whole HR@10
    assert (result["status"], result["decision"]) == ("succeeded", "rejected"), result
    with loop.engine.connect() as conn:
        assert registry.active(conn).version == served
        candidate = registry.get(conn, result["version"])
        assert candidate.status == "rejected" and candidate.reason == result["reason"]
        assert all(a["version"] != result["version"] for a in registry.activations(conn))
