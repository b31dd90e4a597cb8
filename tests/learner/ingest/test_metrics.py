"""The ingest worker's own Prometheus endpoint, scraped over HTTP while it consumes from the real broker: events,
lag per partition, dead letters (an outcome on an item outside the catalog is one), groups closed, the process."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from kafka import KafkaProducer

from learner.ingest.consumer import IngestConfig, run
from ops.stack.servers import create_topics, free_port
from schemas.events import Impression, Outcome, ServedItem
from schemas.settings import Settings
from tests.support.kafka import BROKER_WAIT_S
from tests.support.wait import wait_for


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_the_worker_serves_its_metrics(stack, database_url, tmp_path):
    tag = uuid.uuid4().hex[:8]
    settings = Settings(database_url=database_url, kafka_bootstrap=stack.services["kafka"].url,
                        impressions_topic=f"imp-{tag}", outcomes_topic=f"out-{tag}",
                        attribution_window_s=60)  # fmt: skip
    create_topics(settings.kafka_bootstrap, [settings.impressions_topic, settings.outcomes_topic], 2)
    old = datetime.now(UTC) - timedelta(minutes=10)  # windows long over: the idle advance closes them
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    for n in range(20):
        imp = Impression(request_id=f"r{n}", user_id=f"u{n}", history=[], model_version="v", ts=old,
                         items=[ServedItem(item_id="3112", score=-1.0, rank=1)])  # fmt: skip
        producer.send(settings.impressions_topic, key=f"u{n}".encode(), value=imp.model_dump_json().encode())
    stray = Outcome(event_id="e-stray", user_id="u0", item_id="no-such-item", type="click", ts=old)
    producer.send(settings.outcomes_topic, key=b"u0", value=stray.model_dump_json().encode())
    producer.flush(timeout=BROKER_WAIT_S)
    producer.close()
    port = free_port()
    config = IngestConfig(group_id=f"g-{tag}", lateness_s=5, idle_advance_s=1.0, idle_exit_s=12.0, max_seconds=90,
                          alive_path=tmp_path / "alive", known_items=frozenset({"3112"}),
                          metrics_port=port)  # fmt: skip
    worker = threading.Thread(target=run, args=(settings, config), daemon=True)
    worker.start()
    last: dict = {}

    def settled() -> dict:
        try:
            last.update(seen := scrape(port))
        except httpx.HTTPError:
            return {}
        lag_known = sum(k.startswith("recast_ingest_lag{") for k in seen) == 4  # looked up every 5 s
        done = seen.get("recast_ingest_events_total") == 21 and seen.get("recast_ingest_groups_closed_total") == 20
        return seen if done and lag_known else {}

    seen = wait_for(settled, "the worker's metrics show 21 events, 20 closed groups and 4 lags", timeout=60,
                    state=lambda: last)  # fmt: skip
    assert seen["recast_ingest_dead_letters_total"] == 1  # the outcome on an item outside the catalog
    lags = {k: v for k, v in seen.items() if k.startswith("recast_ingest_lag{")}
    assert len(lags) == 4 and all(v == 0 for v in lags.values()), lags
    assert seen["process_resident_memory_bytes"] > 0 and seen["recast_ingest_watermark_seconds"] > 0
    worker.join(timeout=30)
