"""Kafka for the tests (the session's Tansu broker, or one a test runs itself): produce, consume until a
condition holds, and look at a consumer group from outside (its members' partitions, its committed offsets)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

from tests.support.wait import wait_for

# Tansu joins a group in ~3 s with these, ~23 s with kafka-python's defaults (platform notes).
GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
# How long a test waits on the broker: a producer's flush, a fresh group's first records. Generous, because on
# a starved machine the broker answers slowly, never not at all: with six busy processes on the 2 cores, a fresh
# group's first records took 30-60 s to arrive (about 3 s idle), and a 30 s wait failed three runs in three.
# Every wait ends as soon as what it waits for is there.
BROKER_WAIT_S = 90.0


def produce(bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes]]) -> int:
    """Send ``(topic, key, value)`` records with acks=all and wait until every one is acknowledged."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        futures = [producer.send(topic, key=key, value=value) for topic, key, value in records]
        producer.flush(timeout=BROKER_WAIT_S)
        for f in futures:
            f.get(timeout=1)  # raises if one was not acknowledged
    finally:
        producer.close()
    return len(futures)


def consume(bootstrap: str, topics: list[str], until: Callable[[list], bool], what: str, timeout: float = BROKER_WAIT_S,
            group: str | None = None, commit: bool = False) -> list:  # fmt: skip
    """Read ``topics`` until ``until(records)`` holds; the records (kafka-python ``ConsumerRecord``s, in each
    partition's order). A fresh group reads from the start; ``group`` resumes a group from its committed
    offsets, and ``commit`` commits what was read. Fails saying ``what`` never arrived (joining a group is the
    slow part on a starved machine: see ``BROKER_WAIT_S``)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=group or f"test-{uuid.uuid4().hex}",
                             auto_offset_reset="earliest", enable_auto_commit=False, **GROUP_TIMEOUTS)  # fmt: skip
    records: list = []

    def more() -> bool:
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
        return until(records)

    try:
        wait_for(more, f"{what} (read from {topics})", timeout, state=lambda: f"{len(records)} records")
        if commit:
            consumer.commit()
    finally:
        consumer.close()
    return records


class _Admin:
    """kafka-python's admin client, made and closed around one call."""

    def __init__(self, bootstrap: str):
        from kafka import KafkaAdminClient

        class Admin(KafkaAdminClient):
            # kafka-python 3.0.12 always asks DescribeGroups for the authorized operations and fails on a code
            # newer than it knows (Tansu reports 15); the tests never need them.
            def _process_acl_operations(self, obj):
                obj.pop("authorized_operations", None)
                return obj

        self.client = Admin(bootstrap_servers=bootstrap, client_id=f"test-admin-{uuid.uuid4().hex[:6]}")

    def __enter__(self):
        return self.client

    def __exit__(self, *exc) -> None:
        self.client.close()


def group_members(bootstrap: str, group: str) -> list[str]:
    """The member ids of ``group`` once its membership is settled (state Stable: every member joined and was
    given its partitions), else ``[]``. Tansu reports members but not their partitions, so "a worker owns
    partitions" is read as "the group is Stable with it among the members"."""
    with _Admin(bootstrap) as admin:
        info = admin.describe_groups([group])[group]
    if info["error"] or info["group_state"] != "Stable":
        return []
    return sorted(m["member_id"] for m in info["members"])


def committed_total(bootstrap: str, group: str) -> int:
    """The group's committed offsets summed over partitions. On topics made for the test (offsets from 0,
    one per record) that is the number of records the group has finished: stored, then committed.
    (Tansu's end offsets are not reliable enough to compare against; counts are.)"""
    with _Admin(bootstrap) as admin:
        found = admin.list_group_offsets(group).get(group, {})
    return sum(meta.offset for meta in found.values() if meta.offset > 0)
