"""A quiet stream still closes its groups: a caught-up, idle worker moves event time to the wall clock.

Against the real broker and Postgres: one list is served and nothing else happens. Event time alone never
passes its window (no later event arrives), so without the idle advance the group stays open for good;
with it, the worker closes the group once the window plus the lateness lies behind the wall clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaProducer
from sqlalchemy import create_engine, select

from learner.ingest.consumer import IngestConfig, run
from ops.stack.servers import create_topics
from schemas.events import Impression, ServedItem
from schemas.settings import Settings
from schemas.tables import RewardGroup
from tests.support.kafka import BROKER_WAIT_S


@pytest.fixture
def quiet_stream(stack, database_url):
    tag = uuid.uuid4().hex[:8]
    settings = Settings(database_url=database_url, kafka_bootstrap=stack.services["kafka"].url,
                        impressions_topic=f"imp-{tag}", outcomes_topic=f"out-{tag}",
                        attribution_window_s=60)  # fmt: skip
    create_topics(settings.kafka_bootstrap, [settings.impressions_topic, settings.outcomes_topic], 2)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    served = Impression(request_id=f"r-{tag}", user_id="u1", history=["1"], model_version="v1",
                        items=[ServedItem(item_id="2", score=-1.0, rank=1)],
                        ts=datetime.now(UTC) - timedelta(minutes=5))  # its window ended four minutes ago
    producer.send(settings.impressions_topic, key=b"u1", value=served.model_dump_json().encode())
    producer.flush(timeout=BROKER_WAIT_S)
    producer.close()
    engine = create_engine(database_url)
    yield settings, engine, served.request_id
    engine.dispose()


def window_open(engine, request_id: str) -> bool:
    with engine.connect() as conn:
        return conn.scalar(select(RewardGroup.window_open).where(RewardGroup.request_id == request_id))


@pytest.mark.parametrize("advance", [None, 1.0])
def test_an_idle_worker_closes_groups_whose_window_ended(quiet_stream, tmp_path, advance):
    settings, engine, request_id = quiet_stream
    config = IngestConfig(group_id=f"g-{uuid.uuid4().hex[:8]}", lateness_s=10, idle_advance_s=advance,
                          idle_exit_s=4.0, max_seconds=60, alive_path=tmp_path / "alive")  # fmt: skip
    stats = run(settings, config)
    assert stats.impressions == 1
    if advance is None:
        assert window_open(engine, request_id) and stats.idle_advances == 0
    else:
        assert not window_open(engine, request_id) and stats.closed == 1 and stats.idle_advances >= 1
