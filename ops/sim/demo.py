"""The online half of ``make demo``: serve a checkpoint, simulate shoppers, ingest, report the groups.

On the embedded stack (``recast up`` under ``<run>/stack``): the API (``recast serve``, a
subprocess on 127.0.0.1 with a fresh key) serves the held-out users of a split through the
traffic simulator (:mod:`ops.sim.shoppers`); every list goes to Kafka as an impression and every
outcome through ``/v1/events``; the ingestion worker (``recast ingest``, a subprocess) turns
them into reward groups in Postgres; the report counts them per segment. The API and worker
are stopped at the end; the stack stays up for a look (``recast down --dir <run>/stack``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from ops.sim.shoppers import ApiClient, SimulationStats, Visit, simulate
from ops.stack.servers import HOST, free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class DemoResult:
    stack_ready_s: float
    api_ready_s: float
    simulation: SimulationStats
    ingest: dict
    groups: list[dict]  # per segment


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        except OSError:  # not listening yet, or 503 while it loads
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the API was not ready within {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def group_report(database_url: str) -> list[dict]:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    query = text(
        "SELECT segment, count(*) AS groups, avg(all_zero::int) AS all_zero, "
        "sum(jsonb_array_length(organic_positives)) AS organic, "
        "avg((SELECT count(*) FROM jsonb_array_elements_text(rewards) r WHERE r::float > 0)) AS rewarded_items "
        "FROM reward_groups GROUP BY segment ORDER BY segment"
    )
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
    finally:
        engine.dispose()


def run_demo(checkpoint: Path, visits: list[Visit], run_dir: Path, data_dir: Path, progress=None) -> DemoResult:
    from ops.stack import up
    from schemas.settings import get_settings

    settings = get_settings()
    state = up(run_dir / "stack", [settings.impressions_topic, settings.outcomes_topic], settings.topic_partitions)
    key = secrets.token_urlsafe(24)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **state.env(), "RECAST_DATA_DIR": str(data_dir),
           "RECAST_API_KEYS": hashlib.sha256(key.encode()).hexdigest(), "RECAST_REGISTRY_POLL_S": "0",
           "RECAST_SPOOL_DIR": str(run_dir / "spool")}  # fmt: skip
    port = free_port()
    log = run_dir / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen([sys.executable, "-m", "ops.cli", "serve", "--checkpoint", str(checkpoint),
                                "--host", HOST, "--port", str(port), "--log-level", "warning"],
                               cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = f"http://{HOST}:{port}"
        api_ready_s = _wait_ready(url, api)
        stats = simulate(ApiClient(url, key), visits, on_visit=progress)
    finally:
        _stop(api)  # its publisher flushes the last impressions on the way out
    # The worker drains both topics and stops once it has had nothing to read for a few seconds.
    worker = subprocess.run(
        [sys.executable, "-m", "ops.cli", "ingest", "--group", f"demo-{uuid.uuid4().hex[:8]}", "--idle-exit-s", "5",
         "--max-seconds", "300", "--alive", str(run_dir / "ingest.alive")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    if worker.returncode != 0:
        raise RuntimeError(f"the ingestion worker failed:\n{worker.stderr[-2000:]}")
    ingest = json.loads(worker.stdout.strip().splitlines()[-1])
    return DemoResult(state.ready_s, api_ready_s, stats, ingest, group_report(state.services["postgres"].url))
