"""Exact closing with two workers in one consumer group, one of them far behind (real Tansu and Postgres).

Partition 0 races ahead in event time (t = 1000 s and later, produced throughout the run), while partition 1
holds a list served at t = 0 whose click (t = 30 s) lies behind 20,000 other outcomes. With each worker
closing by its own watermark, the worker of partition 0 closed that list long before the other worker reached
its click, and the click was lost (this test failed so). With the watermark shared per partition through the
database, no group closes before every partition holding data has passed it."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaProducer
from sqlalchemy import create_engine, select

from learner.ingest import watermarks
from learner.ingest.consumer import IngestConfig, run
from ops.stack.servers import create_topics
from schemas.events import Impression, Outcome, ServedItem
from schemas.settings import Settings
from schemas.tables import OutcomeRow, RewardGroup
from tests.support.kafka import BROKER_WAIT_S
from tests.support.wait import wait_for

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
FILLER = 20_000


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def served(rid: str, user: str, item: str, ts: float) -> bytes:
    return Impression(request_id=rid, user_id=user, history=["h"], model_version="v1", ts=at(ts),
                      items=[ServedItem(item_id=item, score=-1.0, rank=1)]).model_dump_json().encode()  # fmt: skip


def did(eid: str, user: str, item: str, ts: float, rid: str | None = None) -> bytes:
    return Outcome(event_id=eid, user_id=user, item_id=item, type="click", ts=at(ts),
                   request_id=rid).model_dump_json().encode()  # fmt: skip


@pytest.fixture
def streams(stack, database_url):
    tag = uuid.uuid4().hex[:8]
    settings = Settings(database_url=database_url, kafka_bootstrap=stack.services["kafka"].url,
                        impressions_topic=f"imp-{tag}", outcomes_topic=f"out-{tag}",
                        attribution_window_s=60)  # fmt: skip
    create_topics(settings.kafka_bootstrap, [settings.impressions_topic, settings.outcomes_topic], 2)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20)
    imp, out = settings.impressions_topic, settings.outcomes_topic
    producer.send(imp, served("r-behind", "behind", "b1", 0), partition=1)
    for n in range(FILLER):  # another shopper's clicks, all inside r-behind's window, ahead of its own
        producer.send(out, did(f"f{n}", "filler", "zz", 1 + 28 * n / FILLER), partition=1)
    producer.send(out, did("e-behind", "behind", "b1", 30, "r-behind"), partition=1)
    producer.send(imp, served("r-ahead-0", "ahead", "a1", 1000), partition=0)
    producer.send(out, did("e-ahead-0", "ahead", "a1", 1001), partition=0)
    producer.flush(timeout=30)
    engine = create_engine(database_url)
    yield settings, producer, engine
    producer.close()
    engine.dispose()


def keep_partition_0_moving(producer, settings, stop: threading.Event) -> None:
    """Partition 0 keeps going (t = 1002 s, 1003 s, ...), so its worker keeps committing batches, and closing."""
    n = 0
    while not stop.wait(0.1):
        n += 1
        producer.send(settings.impressions_topic, served(f"r-ahead-{n}", "ahead", "a1", 1001 + n), partition=0)
        producer.send(settings.outcomes_topic, did(f"e-ahead-{n}", "ahead", "a1", 1001 + n), partition=0)
        producer.flush(timeout=BROKER_WAIT_S)


def test_a_worker_far_behind_keeps_its_groups_open_until_it_has_read_them(streams, tmp_path):
    settings, producer, engine = streams
    group, results = f"g-{uuid.uuid4().hex[:8]}", {}

    def worker(name: str) -> None:
        config = IngestConfig(group_id=group, batch_size=200, lateness_s=10, idle_advance_s=None, idle_exit_s=4,
                              max_seconds=120, alive_path=tmp_path / f"{name}.alive")  # fmt: skip
        results[name] = run(settings, config)

    stop = threading.Event()
    mover = threading.Thread(target=keep_partition_0_moving, args=(producer, settings, stop), daemon=True)
    threads = [threading.Thread(target=worker, args=(n,)) for n in ("one", "two")]
    for t in [*threads, mover]:
        t.start()
    with engine.connect() as conn:  # partition 0 keeps moving until the far-behind click is stored

        def stored() -> bool:
            found = conn.scalar(select(OutcomeRow.event_id).where(OutcomeRow.event_id == "e-behind")) is not None
            conn.rollback()
            return found

        wait_for(stored, "the click behind 20,000 outcomes is stored", timeout=100)
    stop.set()
    for t in threads:
        t.join(timeout=150)
    assert set(results) == {"one", "two"}, "a worker did not finish"
    assert all(r.messages > 0 for r in results.values()), {k: r.messages for k, r in results.items()}
    with engine.connect() as conn:
        group_row = conn.execute(select(RewardGroup).where(RewardGroup.request_id == "r-behind")).one()
        credited = conn.scalar(select(OutcomeRow.attributed_request_id).where(OutcomeRow.event_id == "e-behind"))
        marks = watermarks.rows(conn, group)
    assert credited == "r-behind" and group_row.rewards == [0.25], "the click was read after its list closed"
    assert not group_row.window_open  # and it did close, once every partition had passed it
    assert len(marks) == 4 and min(marks.values()) >= at(1000)
