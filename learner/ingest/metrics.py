"""The ingest worker's own Prometheus endpoint (``RECAST_INGEST_METRICS_PORT``): what it consumed, how far
behind it is per partition, what it dead-lettered and closed, its watermark, and the process itself.

Counters are read from the worker's :class:`~learner.ingest.consumer.IngestStats` at scrape time, so they
cannot drift from the numbers the worker logs and prints."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class IngestCollector:
    def __init__(self, snapshot: Callable[[], dict]):
        self.snapshot = snapshot  # -> {"stats": IngestStats, "lag": {(topic, p): n}, "watermark": datetime|None}
        self._last = (time.monotonic(), 0)
        self._rate = 0.0

    def describe(self):
        return []

    def collect(self):
        snap = self.snapshot()
        stats = snap["stats"]
        counters = {
            "events": ("Messages consumed and committed (impressions, outcomes, dead letters).", stats.messages),
            "dead_letters": ("Messages that could not be read or broke a rule, kept with the reason.",
                             stats.dead_letters),  # fmt: skip
            "groups_closed": ("Reward groups closed (their attribution window and lateness passed).", stats.closed),
            "credited": ("Outcomes credited to a served list.", stats.credited),
            "duplicates": ("Events already stored (a redelivery or a retried call).", stats.duplicates),
            "db_retries": ("Batches written again after a database error.", stats.db_retries),
        }
        for name, (help_text, value) in counters.items():
            yield CounterMetricFamily(f"recast_ingest_{name}", help_text, value=value)
        yield GaugeMetricFamily("recast_ingest_events_per_second", "Messages committed per second since the last "
                                "scrape.", value=self._events_per_s(stats.messages))  # fmt: skip
        lag = GaugeMetricFamily("recast_ingest_lag", "Messages not yet consumed, per assigned partition.",
                                labels=["topic", "partition"])  # fmt: skip
        for (topic, partition), n in sorted(snap["lag"].items()):
            lag.add_metric([topic, str(partition)], n)
        yield lag
        mark = snap["watermark"]
        yield GaugeMetricFamily("recast_ingest_watermark_seconds", "The group's shared watermark (Unix time; 0: "
                                "none yet).", value=mark.timestamp() if mark else 0.0)  # fmt: skip

    def _events_per_s(self, messages: int) -> float:
        now = time.monotonic()
        then, before = self._last
        if now - then >= 1.0:
            self._rate, self._last = (messages - before) / (now - then), (now, messages)
        return self._rate


def serve_metrics(host: str, port: int, snapshot: Callable[[], dict]):
    """Start the endpoint in a daemon thread; returns (server, thread) so a caller can shut it down."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # RSS, CPU seconds, open fds, start time
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(IngestCollector(snapshot))
    return start_http_server(port, addr=host, registry=registry)
