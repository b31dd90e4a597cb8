"""The publisher against a real broker (Tansu) that each test starts, pauses, kills and restarts itself.

The embedded Tansu keeps messages in memory only: records it acknowledged before it was killed
are gone after its restart (Apache Kafka in production keeps them). So the fault test checks what
the publisher guarantees: every record was either acknowledged by the first broker (with
acks=all) or reaches the restarted one. Every wait is on the publisher's own counters or on what
a consumer reads, bounded; the fault test pauses the broker (SIGSTOP) so that records are surely
in flight when it is killed.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from ops.stack.servers import create_topics, free_port, port_open, start_kafka, stop_pid
from serving.publisher import Publisher, PublisherConfig
from tests.support.kafka import consume
from tests.support.wait import wait_for

IMPRESSIONS, OUTCOMES = "recast.impressions", "recast.outcomes"
CONFIG = PublisherConfig(timeout_ms=2000, retry_s=0.2)  # short, so a dead broker is noticed within ~2 s
# Long network waits: a publish() that waited on the network would take ~30 s, one that does not takes
# milliseconds, and even a badly overloaded machine (load 17 on 2 cores held one call 1.3 s) stays far below.
PATIENT = PublisherConfig(timeout_ms=30_000, retry_s=0.2)
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
        wait_for(lambda: port_open(self.port), f"kafka listening on {self.port}", timeout=10)
        create_topics(self.url, [IMPRESSIONS, OUTCOMES], partitions=2)  # memory-only: again after every start

    def pause(self) -> None:
        """SIGSTOP: the broker keeps its connections (the kernel even takes the bytes) but answers nothing."""
        os.kill(self.pid, signal.SIGSTOP)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self.pid = None

    def stop(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGCONT)  # a paused broker could not act on the SIGTERM
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


def keys(n: int, start: int = 0) -> set[str]:
    return {f"k{i}" for i in range(start, start + n)}


def read_back(bootstrap: str, want: set[str]) -> list:
    """Both topics from the start until every key of ``want`` was read; the records, in partition order."""
    return consume(bootstrap, [IMPRESSIONS, OUTCOMES], lambda rs: want <= {r.key.decode() for r in rs},
                   f"{len(want)} records on the broker", timeout=SETTLE_S)  # fmt: skip


def settle(publisher: Publisher, check, what: str, timeout: float = SETTLE_S) -> dict:
    wait_for(lambda: check(publisher.stats()), what, timeout, state=publisher.stats)
    return publisher.stats()


def drained(stats: dict) -> bool:
    return stats["broker_up"] and stats["pending_in_spool"] == 0 and stats["queue_depth"] == 0


def publish_all(publisher: Publisher, records) -> float:
    """Publish every record; the longest a single publish() held its caller, in seconds."""
    longest = 0.0
    for topic, key, value in records:
        t0 = time.perf_counter()
        publisher.publish(topic, key, value)
        longest = max(longest, time.perf_counter() - t0)
    return longest


def test_broker_up_every_record_arrives_once(broker, tmp_path):
    broker.start()
    publisher = Publisher(broker.url, tmp_path / "spool", CONFIG)
    expected = list(payloads(400))
    publish_all(publisher, expected)
    publisher.close(timeout=10)
    stats = publisher.stats()
    assert stats["published"] == 400 and stats["spooled"] == 0 and stats["pending_in_spool"] == 0
    got = [(r.topic, r.key.decode(), r.value) for r in read_back(broker.url, keys(400))]
    assert sorted(got) == sorted(expected)  # each once


def test_broker_down_at_start_spools_then_replays_in_order(broker, tmp_path):
    """Nothing listens at first: publish() never waits for the network (no single call near the producer's
    timeout), and everything is spooled. When the broker comes up the spool is replayed, and records
    published meanwhile go out behind it: in every partition, records arrive in the order they were published."""
    publisher = Publisher(broker.url, tmp_path / "spool", PATIENT)  # nothing listens on the port yet
    try:
        longest = publish_all(publisher, payloads(500))
        # The producer's own waits are PATIENT.timeout_ms (30 s); a caller must never be held anywhere near that.
        assert longest < PATIENT.timeout_ms / 1000 / 4, longest
        stats = settle(publisher, lambda s: s["spooled"] == 500, "all 500 records spooled")
        assert stats["pending_in_spool"] == 500 and not stats["broker_up"] and stats["published"] == 0

        broker.start()
        publish_all(publisher, payloads(200, start=500))  # while the spool replays, or just before
        # Drained (queue and spool empty) is not delivered: the last records may still be in the worker's hands,
        # and a replayed segment is counted just after it is deleted. Wait on the counts themselves.
        settle(publisher, lambda s: drained(s) and s["published"] >= 700 and s["replayed"] >= 500,
               "all 700 delivered, the 500 spooled ones by replay")  # fmt: skip
        records = read_back(broker.url, keys(700))
        order: dict[tuple[str, int], list[int]] = {}
        for r in records:
            i = json.loads(r.value)["i"]
            seen = order.setdefault((r.topic, r.partition), [])
            if i not in seen:  # a segment re-sent after a partial failure repeats records; first arrivals count
                seen.append(i)
        assert sum(len(v) for v in order.values()) == 700
        for partition, sequence in order.items():
            assert sequence == sorted(sequence), f"{partition} out of publish order: {sequence[:20]}"
    finally:
        publisher.close(timeout=5)


def test_broker_killed_with_records_in_flight_loses_nothing(broker, tmp_path):
    """The first 500 records are acknowledged; the broker is paused, 500 more are published and the publisher
    sends them (in flight, unacknowledged); then it is killed, and 500 more come while it is dead. After its
    restart every record was either acknowledged by the first broker or reaches the second."""
    broker.start()
    acked_by_first, restarted = set(), threading.Event()

    def on_delivered(record):
        if not restarted.is_set():  # before the restart only the first broker can acknowledge
            acked_by_first.add(record.key.decode())

    publisher = Publisher(broker.url, tmp_path / "spool", CONFIG, on_delivered=on_delivered)
    try:
        publish_all(publisher, payloads(500))
        settle(publisher, lambda s: s["published"] == 500, "the first 500 acknowledged by the first broker")
        broker.pause()
        publish_all(publisher, payloads(500, start=500))
        settle(publisher, lambda s: s["queue_depth"] < 500 and s["failed_attempts"] == 0 and s["published"] == 500,
               "records taken off the queue and sent, not yet acknowledged (in flight)")  # fmt: skip
        broker.kill()
        publish_all(publisher, payloads(500, start=1000))
        settle(publisher, lambda s: not s["broker_up"] and s["pending_in_spool"] > 0, "broker noticed down")

        restarted.set()  # the first broker is dead: any acknowledgement from now on is the second's
        broker.start()
        stats = settle(publisher, lambda s: drained(s) and s["published"] + s["spooled"] >= 1500 and s["replayed"] > 0,
                       "the spool replayed to the restarted broker")  # fmt: skip
        assert stats["failed_attempts"] > 0
        assert acked_by_first == keys(500)  # exactly what was acknowledged before the pause
        second = {r.key.decode() for r in read_back(broker.url, keys(1000, start=500))}
        assert acked_by_first | second == keys(1500)  # none lost
    finally:
        publisher.close(timeout=5)


def test_a_new_publisher_replays_what_a_closed_one_spooled(broker, tmp_path):
    spool = tmp_path / "spool"
    first = Publisher(broker.url, spool, CONFIG)  # broker down
    publish_all(first, payloads(300))
    first.close(timeout=2)
    assert first.stats()["pending_in_spool"] == 300

    second = Publisher(broker.url, spool, CONFIG)
    try:
        assert second.stats()["pending_in_spool"] == 300  # seen on disk before any broker is up
        broker.start()
        stats = settle(second, lambda s: drained(s) and s["replayed"] >= 300, "second publisher replayed")
        assert stats["replayed"] == 300
        assert {r.key.decode() for r in read_back(broker.url, keys(300))} == keys(300)
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
