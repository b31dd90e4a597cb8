"""Prometheus metrics of one API process, in its own registry (two apps in one process, as in
the tests, do not collide).

Request latency, batch sizes and engine time are observed where they happen; the publisher's
and the holder's counters are read at scrape time by a collector, so they cannot drift from
the objects that own them.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# Latency buckets from 1 ms to 10 s: a decode on the CPU is a few ms, a swap-time stall or a cold vLLM seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self, publisher_stats: Callable[[], dict], model_state: Callable[[], dict]):
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "recast_request_seconds", "Request latency by route and status.", ["route", "status"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "recast_batch_size", "Requests decoded together.", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.engine_seconds = Histogram(
            "recast_engine_seconds", "Time of one batch's decode and ranking.", buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.impressions = Counter(
            "recast_impressions", "Served lists handed to the publisher.", registry=self.registry
        )
        self.events = Counter("recast_events", "Storefront outcomes handed to the publisher.", registry=self.registry)
        self.shed = Counter("recast_shed", "Recommend requests refused with 503 because the decoder's queue was full.",
                            registry=self.registry)  # fmt: skip
        self.limited = Counter("recast_rate_limited", "Requests refused with 429: their key was over its rate "
                               "limit.", ["key"], registry=self.registry)  # fmt: skip
        self.queue_depth: Callable[[], int] = lambda: 0  # set once the batcher exists
        self.catalog_state: Callable[[], dict] = lambda: {}  # {"version", "retired"}, set once the catalog exists
        self.registry.register(_StateCollector(publisher_stats, model_state, lambda: self.queue_depth(),
                                               lambda: self.catalog_state()))  # fmt: skip
        # The process itself: RSS, CPU seconds, open file descriptors, start time, GC (what a soak watches).
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.engine_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    def __init__(self, publisher_stats: Callable[[], dict], model_state: Callable[[], dict],
                 queue_depth: Callable[[], int], catalog_state: Callable[[], dict]):  # fmt: skip
        self.publisher_stats, self.model_state, self.queue_depth = publisher_stats, model_state, queue_depth
        self.catalog_state = catalog_state

    def describe(self):
        return []  # collected on every scrape; nothing to check at registration

    def collect(self):
        stats = self.publisher_stats()
        records = CounterMetricFamily(
            "recast_publisher_records", "Records by outcome: published (acknowledged by Kafka), spooled "
            "(written to the local spool), replayed (from the spool), failed (send attempts not acknowledged), "
            "lost (could not even be spooled).", labels=["outcome"],
        )  # fmt: skip
        for name in ("published", "spooled", "replayed", "failed_attempts", "lost", "rejected"):
            records.add_metric([name.removesuffix("_attempts")], stats.get(name, 0))
        yield records
        yield GaugeMetricFamily("recast_spool_pending", "Records in the spool waiting for Kafka.",
                                value=stats.get("pending_in_spool", 0))  # fmt: skip
        yield GaugeMetricFamily("recast_queue_depth", "Recommend requests admitted and not yet answered.",
                                value=self.queue_depth())  # fmt: skip
        yield GaugeMetricFamily("recast_broker_up", "1 when the publisher reaches Kafka.",
                                value=float(bool(stats.get("broker_up"))))  # fmt: skip
        state = self.model_state()
        info = GaugeMetricFamily("recast_model_info", "The model being served (value 1).", labels=["version", "engine"])
        if state.get("version"):
            info.add_metric([state["version"], state["engine"]], 1.0)
        yield info
        catalog = self.catalog_state()
        yield GaugeMetricFamily("recast_catalog_version", "The catalog version served (0: none recorded).",
                                value=catalog.get("version") or 0)  # fmt: skip
        yield GaugeMetricFamily("recast_catalog_retired_items", "Items retired in the catalog version served.",
                                value=catalog.get("retired", 0))  # fmt: skip
        cache = state.get("beam_cache", {})
        prompts = CounterMetricFamily("recast_beam_cache_prompts", "Prompts the served model's engine answered "
                                      "from its cache of beams (hit) or decoded (miss); they restart at a swap.",
                                      labels=["result"])  # fmt: skip
        for result, name in (("hit", "hits"), ("miss", "misses")):
            prompts.add_metric([result], cache.get(name, 0))
        yield prompts
        yield GaugeMetricFamily("recast_beam_cache_entries", "Beams the served model's engine holds.",
                                value=cache.get("entries", 0))  # fmt: skip
        swaps = CounterMetricFamily("recast_model_swaps", "Model swaps by result.", labels=["result"])
        for result, count in state.get("swaps", {}).items():
            swaps.add_metric([result], count)
        yield swaps
