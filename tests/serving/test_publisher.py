"""The publisher against a real broker (Tansu) that each test starts, kills and restarts itself.

The embedded Tansu keeps messages in memory only: records it acknowledged before it was killed
are gone after its restart (Apache Kafka in production keeps them). So the fault test checks what
the publisher guarantees: every record was either acknowledged by the first broker (with
acks=all) or reaches the restarted one.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid

import pytest

from ops.stack.servers import create_topics, free_port, port_open, start_kafka, stop_pid, wait_until
from serving.publisher import Publisher, PublisherConfig

IMPRESSIONS, OUTCOMES = "recast.impressions", "recast.outcomes"
CONFIG = PublisherConfig(timeout_ms=2000, retry_s=0.2)  # short, so a dead broker is noticed within ~2 s
SETTLE_S = 30.0  # the longest any test waits for its records to move


class Broker:
    """One Tansu process on a fixed port, so it can come back where the publisher looks for it."""

    def __init__(self, root, port=None):
        self.root, self.port, self.pid = root, port or free_port(), None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        service = start_kafka(self.root, port=self.port)
        self.pid = service.pid
        wait_until(lambda: port_open(self.port), f"kafka on {self.port}", timeout=10)
        create_topics(self.url, [IMPRESSIONS, OUTCOMES], partitions=2)  # memory-only: again after every start

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self.pid = None

    def stop(self) -> None:
        if self.pid is not None:
            stop_pid(self.pid)
            self.pid = None


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "kafka")
    try:
        yield b
    finally:
        b.stop()


def payloads(n: int, start: int = 0):
    """(topic, key, value): impressions and outcomes interleaved, keyed like the API keys them."""
    for i in range(start, start + n):
        topic = OUTCOMES if i % 4 == 3 else IMPRESSIONS
        yield topic, f"k{i}", json.dumps({"request_id": f"k{i}", "i": i}).encode()


def consume(bootstrap: str, n: int, timeout: float = SETTLE_S) -> list[tuple[str, str, bytes]]:
    """Read both topics from the start until ``n`` distinct keys arrived, then one more second for extras."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        IMPRESSIONS,
        OUTCOMES,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",  # fresh per read: Tansu may keep stale assignments otherwise
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
        session_timeout_ms=6000,  # joins in ~3 s on Tansu instead of ~23 s
        heartbeat_interval_ms=1000,
    )
    out, deadline, extra_until = [], time.monotonic() + timeout, None
    try:
        while time.monotonic() < (extra_until or deadline):
            for records in consumer.poll(timeout_ms=200).values():
                out += [(r.topic, r.key.decode(), r.value) for r in records]
            if extra_until is None and len({key for _, key, _ in out}) >= n:
                extra_until = time.monotonic() + 1.0
    finally:
        consumer.close()
    return out


def settle(publisher: Publisher, check, what: str, timeout: float = SETTLE_S) -> dict:
    wait_until(lambda: check(publisher.stats()), f"{what} (stats {publisher.stats()})", timeout=timeout, every=0.05)
    return publisher.stats()


def drained(stats: dict) -> bool:
    return stats["broker_up"] and stats["pending_in_spool"] == 0 and stats["queue_depth"] == 0


def test_broker_up_every_record_arrives_once(broker, tmp_path):
    broker.start()
    publisher = Publisher(broker.url, tmp_path / "spool", CONFIG)
    expected = list(payloads(400))
    for topic, key, value in expected:
        publisher.publish(topic, key, value)
    publisher.close(timeout=10)
    stats = publisher.stats()
    assert stats["published"] == 400 and stats["spooled"] == 0 and stats["pending_in_spool"] == 0
    assert sorted(consume(broker.url, 400)) == sorted(expected)


def test_broker_down_at_start_spools_then_replays(broker, tmp_path):
    publisher = Publisher(broker.url, tmp_path / "spool", CONFIG)  # nothing listens on the port yet
    try:
        t0 = time.monotonic()
        for topic, key, value in payloads(500):
            publisher.publish(topic, key, value)
        elapsed = time.monotonic() - t0
        # The producer's own waits are CONFIG.timeout_ms; a caller must never be held anywhere near that.
        assert elapsed < CONFIG.timeout_ms / 1000 / 4, elapsed
        stats = settle(publisher, lambda s: s["spooled"] == 500, "all records spooled")
        assert stats["pending_in_spool"] == 500 and not stats["broker_up"] and stats["published"] == 0

        broker.start()
        stats = settle(publisher, lambda s: drained(s) and s["replayed"] >= 500, "spool replayed")
        assert stats["published"] >= 500
        keys = {key for _, key, _ in consume(broker.url, 500)}
        assert keys == {f"k{i}" for i in range(500)}
    finally:
        publisher.close(timeout=5)


def test_broker_killed_mid_stream_loses_nothing(broker, tmp_path):
    broker.start()
    acked_by_first, restarted = set(), threading.Event()

    def on_delivered(record):
        if not restarted.is_set():  # before the restart only the first broker can acknowledge
            acked_by_first.add(record.key.decode())

    publisher = Publisher(broker.url, tmp_path / "spool", CONFIG, on_delivered=on_delivered)
    try:
        n, kill_at = 1500, 500
        for i, (topic, key, value) in enumerate(payloads(n)):
            if i == kill_at:
                broker.kill()  # records are queued and in flight right now
            publisher.publish(topic, key, value)
            if i % 50 == 0:
                time.sleep(0.01)  # a stream, not one burst: some batches complete before the kill
        settle(publisher, lambda s: not s["broker_up"] and s["pending_in_spool"] > 0, "broker noticed down")

        restarted.set()  # the first broker is dead: any acknowledgement from now on is the second's
        broker.start()
        stats = settle(publisher, lambda s: drained(s) and s["published"] + s["spooled"] >= n, "spool replayed")
        assert stats["failed_attempts"] > 0 and stats["replayed"] > 0
        second = {key for _, key, _ in consume(broker.url, n - len(acked_by_first))}
        assert 0 < len(acked_by_first) < n  # the kill really was mid-stream
        assert acked_by_first | second == {f"k{i}" for i in range(n)}  # distinct keys == n: none lost
    finally:
        publisher.close(timeout=5)


def test_a_new_publisher_replays_what_a_closed_one_spooled(broker, tmp_path):
    spool = tmp_path / "spool"
    first = Publisher(broker.url, spool, CONFIG)  # broker down
    for topic, key, value in payloads(300):
        first.publish(topic, key, value)
    first.close(timeout=2)
    assert first.stats()["pending_in_spool"] == 300

    second = Publisher(broker.url, spool, CONFIG)
    try:
        assert second.stats()["pending_in_spool"] == 300  # seen on disk before any broker is up
        broker.start()
        stats = settle(second, lambda s: drained(s), "second publisher replayed")
        assert stats["replayed"] == 300
        assert {key for _, key, _ in consume(broker.url, 300)} == {f"k{i}" for i in range(300)}
    finally:
        second.close(timeout=5)


def test_full_queue_spills_to_spool_instead_of_dropping(broker, tmp_path):
    publisher = Publisher(broker.url, tmp_path / "spool", PublisherConfig(queue_size=10, timeout_ms=2000))
    try:
        for topic, key, value in payloads(200):  # far faster than the worker drains a down broker
            publisher.publish(topic, key, value)
        stats = settle(publisher, lambda s: s["spooled"] == 200, "all records spooled")
        assert stats["pending_in_spool"] == 200 and stats["lost"] == 0
    finally:
        publisher.close(timeout=2)


def test_from_settings_uses_the_spool_dir_and_knobs(tmp_path):
    from schemas.settings import Settings

    settings = Settings(
        kafka_bootstrap=f"127.0.0.1:{free_port()}", spool_dir=tmp_path / "spool", publisher_timeout_ms=1500
    )
    publisher = Publisher.from_settings(settings)
    publisher.publish(OUTCOMES, "e1", b"{}")
    publisher.close(timeout=1)
    assert publisher.config.timeout_ms == 1500
    assert publisher.stats()["pending_in_spool"] == 1
    again = Publisher.from_settings(settings)  # a restart finds it on disk
    again.close(timeout=1)
    assert again.stats()["pending_in_spool"] == 1
