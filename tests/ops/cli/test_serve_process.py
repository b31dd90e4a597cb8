"""`recast serve` as an operator runs it (a subprocess on the real stack): the README's curl command works,
logs are JSON lines that carry the request id and the key's name but never the key, with an access line per
request and no Kafka client chatter; SIGTERM lets the requests in flight finish."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ops.stack.servers import create_topics, free_port
from serving.auth import digest
from tests.support.api import metric
from tests.support.data import histories
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
KEY = "readme-storefront-key-" + uuid.uuid4().hex


@pytest.fixture
def served(stack, tmp_path, tiny_checkpoint, shipped_data, database_url):
    tag = uuid.uuid4().hex[:8]
    create_topics(stack.services["kafka"].url, [f"imp-{tag}", f"out-{tag}"], 1)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RECAST_KAFKA_BOOTSTRAP": stack.services["kafka"].url,
           "RECAST_IMPRESSIONS_TOPIC": f"imp-{tag}", "RECAST_OUTCOMES_TOPIC": f"out-{tag}",
           "RECAST_API_KEYS": f"shop:{digest(KEY)}", "RECAST_REGISTRY_POLL_S": "0",
           "RECAST_DATA_DIR": str(shipped_data), "RECAST_DATABASE_URL": database_url,  # the catalog's versions
           "RECAST_SPOOL_DIR": str(tmp_path / "spool"), "RECAST_BATCH_MAX_SIZE": "1", "RECAST_BEAM_WIDTH": "50",
           "RECAST_LOG_FORMAT": "json"}  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "ops.cli", "serve", "--checkpoint", str(tiny_checkpoint),
                             "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready():
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, "the API ready", timeout=120)
    yield proc, url, tmp_path / "serve.log"
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    log.close()


def readme_curl(port_url: str) -> list[str]:
    """The curl command of the README's "The service" section, with the key and port filled in."""
    text = (ROOT / "README.md").read_text()
    command = re.search(r"^curl .*?(?:\\\n.*?)*'$", text, re.M).group(0).replace("\\\n", " ")
    command = command.replace("<key>", KEY).replace("127.0.0.1:8000", port_url.removeprefix("http://"))
    return shlex.split(command)


def log_lines(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_the_readme_curl_works_and_logs_are_json_with_request_id_and_key_name(served):
    proc, url, log = served
    result = subprocess.run(readme_curl(url) + ["-i"], capture_output=True, text=True, timeout=60)
    head, _, body = result.stdout.partition("\n\n")  # text mode has turned CRLF into LF
    assert result.returncode == 0 and head.startswith("HTTP/1.1 200"), result.stdout[:500]
    assert len(json.loads(body)["items"]) == 10
    rid = re.search(r"(?im)^x-request-id: (\S+)", head).group(1)
    lines = wait_for(
        lambda: [r for r in log_lines(log) if r.get("request_id") == rid], "the access log line", timeout=120
    )
    access = next(r for r in lines if r["name"] == "recast.access")
    assert access["status"] == 200 and access["path"] == "/v1/recommend" and access["key"] == "shop"
    assert access["duration_ms"] > 0 and access["level"] == "INFO"
    text = log.read_text()
    assert KEY not in text and digest(KEY) not in text  # neither the key nor its digest is ever written
    assert not [r for r in log_lines(log) if r["name"].startswith("kafka") and r["level"] == "INFO"]
    non_json = [line for line in text.splitlines() if line.strip() and not line.startswith("{")]
    assert not non_json, non_json[:5]


def test_sigterm_lets_requests_in_flight_finish(served):
    proc, url, _ = served
    # A history each: the service keeps the beams it has decoded (serving.engines.beam_cache), so one body sent 24
    # times would be decoded once and never queue.
    bodies = [{"user_id": f"u-drain-{n}", "history": h, "k": 50} for n, h in enumerate(histories(24))]

    def one(n):
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
            return c.post("/v1/recommend", json=bodies[n]).status_code

    def all_admitted_some_queued() -> bool:
        # A request still connecting when the signal lands is refused by design (the listener closes), so signal
        # only once the server holds all 24: answered ones plus those queued in the decoder.
        text = httpx.get(f"{url}/metrics", timeout=5).text
        queued = metric(text, "recast_queue_depth")
        answered = metric(text, 'recast_request_seconds_count{route="/v1/recommend",status="200"}')
        return queued >= 4 and queued + answered >= 24

    with ThreadPoolExecutor(24) as pool:
        answers = pool.map(one, range(24))
        wait_for(all_admitted_some_queued, "all 24 requests admitted, some still queued in the decoder", timeout=60)
        proc.send_signal(signal.SIGTERM)
        statuses = list(answers)
    assert statuses == [200] * 24, statuses
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has drained


def test_a_repeated_request_is_answered_from_the_cache_of_beams(served):
    _, url, _ = served
    body = {"user_id": "u-cache", "history": histories(1)[0], "k": 10}

    def cache() -> tuple[float, float]:
        text = httpx.get(f"{url}/metrics", timeout=5).text
        return (metric(text, 'recast_beam_cache_prompts_total{result="hit"}'),
                metric(text, 'recast_beam_cache_prompts_total{result="miss"}'))  # fmt: skip

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        hits0, misses0 = cache()
        first = c.post("/v1/recommend", json=body).json()["items"]
        hits1, misses1 = cache()
        again = c.post("/v1/recommend", json=body).json()["items"]
        hits2, misses2 = cache()
    assert (hits1 - hits0, misses1 - misses0) == (0, 1)  # decoded once
    assert (hits2 - hits1, misses2 - misses1) == (1, 0)  # then answered from memory
    assert again == first
