"""Faults a production worker meets: a real Postgres restart, and a worker of a group dying.

Both run against real servers: a Postgres of the test's own (so stopping it disturbs no
other test) and the session's Tansu broker, with fresh topics and group ids.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

from kafka import KafkaProducer
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from learner.ingest.consumer import IngestConfig, run
from ops.stack import migrate
from ops.stack.servers import create_database, create_topics, start_postgres, stop_postgres
from schemas.events import Impression
from schemas.settings import Settings
from schemas.tables import DeadLetter, ImpressionRow, OutcomeRow, RewardGroup
from tests.learner.ingest.test_consumer import ROOT, impression, outcome

TABLES = {"impressions": ImpressionRow, "outcomes": OutcomeRow, "groups": RewardGroup, "dead": DeadLetter}


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {k: conn.scalar(select(func.count()).select_from(t)) for k, t in TABLES.items()}


def produce(settings: Settings, events) -> int:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    for e in events:
        topic = settings.impressions_topic if isinstance(e, Impression) else settings.outcomes_topic
        producer.send(topic, key=e.user_id.encode(), value=e.model_dump_json().encode())
    producer.flush(timeout=10)
    producer.close()
    return len(events)


def fresh_settings(kafka: str, database_url: str, **extra) -> Settings:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(database_url=database_url, kafka_bootstrap=kafka, impressions_topic=f"imp-{tag}",
                        outcomes_topic=f"out-{tag}", **extra)  # fmt: skip
    create_topics(kafka, [settings.impressions_topic, settings.outcomes_topic], 4)
    return settings


def test_a_real_postgres_restart_mid_stream_loses_nothing(stack, tmp_path):
    """The server itself stops (pg_ctl stop -m fast: every session ends, the port closes) and comes
    back on the same port; the worker rewinds the failed batches and the counts come out exact."""
    root = tmp_path / "own-postgres"
    server = start_postgres(root)
    try:
        create_database(server.url, "ingest")
        url = make_url(server.url).set(database="ingest").render_as_string(hide_password=False)
        migrate(url)
        settings = fresh_settings(stack.services["kafka"].url, url)
        users = 300
        events = [(impression(f"r{u}", f"u{u}", ["a", "b"], u), outcome(f"e{u}", f"u{u}", "b", "purchase", u + 1))
                  for u in range(users)]  # fmt: skip
        n = produce(settings, [e for pair in events for e in pair])
        engine = create_engine(url, pool_pre_ping=True)
        found: list = []
        config = IngestConfig(group_id=f"g-{uuid.uuid4().hex[:8]}", max_events=n, max_seconds=90, batch_size=20,
                              retry_s=0.3, alive_path=tmp_path / "alive")  # fmt: skip
        worker = threading.Thread(target=lambda: found.append(run(settings, config)))
        worker.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and counts(engine)["impressions"] == 0:
            time.sleep(0.05)
        engine.dispose()
        stop_postgres(root)  # mid-stream: 20-message batches, 600 messages
        time.sleep(2)
        start_postgres(root, port=server.port)
        worker.join(timeout=90)
        (stats,) = found
        assert stats.db_retries >= 1 and stats.messages == n
        assert counts(engine) == {"impressions": users, "outcomes": users, "groups": users, "dead": 0}
        with engine.connect() as conn:
            assert all(r.rewards == [0.0, 1.0] for r in conn.execute(select(RewardGroup.__table__)))
        engine.dispose()
    finally:
        stop_postgres(root)


def test_a_worker_of_a_group_dies_and_the_other_takes_over_its_partitions(stack, tmp_path):
    """Two `recast ingest` processes share one group (4 partitions per topic). Once both consume,
    one is SIGKILLed; the second half of the stream, keyed over every partition, can only be
    counted if the survivor takes the dead worker's partitions over (after the session timeout)
    from their committed offsets. Every event must be counted exactly once."""
    tag = uuid.uuid4().hex[:8]
    server_url = stack.services["postgres"].url
    create_database(server_url, f"rebalance_{tag}")
    url = make_url(server_url).set(database=f"rebalance_{tag}").render_as_string(hide_password=False)
    migrate(url)
    settings = fresh_settings(stack.services["kafka"].url, url, attribution_window_s=1800)
    users = 400

    def session(u: int):
        return (impression(f"r{u}", f"u{u}", ["a", "b", "c"], u * 0.1),
                outcome(f"c{u}", f"u{u}", "b", "click", u * 0.1 + 1),
                outcome(f"o{u}", f"u{u}", "z", "click", u * 0.1 + 2))  # fmt: skip

    overrides = {
        "database_url": url,
        "kafka_bootstrap": settings.kafka_bootstrap,
        "attribution_window_s": 1800,
        "impressions_topic": settings.impressions_topic,
        "outcomes_topic": settings.outcomes_topic,
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT), **{f"RECAST_{k.upper()}": str(v) for k, v in overrides.items()}}
    group = f"g-{tag}"

    def worker(name: str, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "ingest", "--group", group, "--batch-size", "25",
             "--alive", str(tmp_path / f"{name}.alive"), "--no-check-items", *extra],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    engine = create_engine(url)
    doomed = worker("doomed", "--max-seconds", "120")
    survivor = worker("survivor", "--idle-exit-s", "25", "--max-seconds", "150")
    try:
        time.sleep(10)  # both join (about 3 s each with the worker's timeouts) and the group settles
        first = produce(settings, [e for u in range(users // 2) for e in session(u)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and counts(engine)["outcomes"] < users:  # the first half, consumed
            time.sleep(0.05)
        os.kill(doomed.pid, signal.SIGKILL)
        second = produce(settings, [e for u in range(users // 2, users) for e in session(u)])
        out, _ = survivor.communicate(timeout=170)
    finally:
        for proc in (doomed, survivor):
            proc.kill()
            proc.wait(timeout=10)
    assert survivor.returncode == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert 0 < summary["messages"] < first + second  # the dead worker had done its share of the first half
    assert counts(engine) == {"impressions": users, "outcomes": 2 * users, "groups": users, "dead": 0}
    with engine.connect() as conn:
        groups = list(conn.execute(select(RewardGroup.__table__)))
    assert all(g.rewards == [0.0, 0.25, 0.0] for g in groups)
    assert all([o["event_id"] for o in g.organic_positives] == [f"o{g.request_id[1:]}"] for g in groups)
    engine.dispose()
