"""The ingestion loop: poll a batch, write it in one database transaction, then commit the offsets.

The order is the guarantee. A crash before the database commit loses nothing (the offsets
were not committed, the batch comes again); a crash between the two commits redelivers a
batch the database already holds, and the unique keys make that a no-op. A database error
(Postgres restarting) rolls back, rewinds the consumer to the batch's first offsets and
retries, so nothing is skipped either. Malformed messages become dead letters in the same
transaction; they never stop the loop. Groups close by the watermark the group's workers
share through the database (:mod:`learner.ingest.watermarks`), so several workers close exactly.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from learner.ingest import pipeline
from learner.ingest.partitions import PartitionTracker
from learner.ingest.pipeline import Batch, Written
from schemas.settings import Settings

log = logging.getLogger("recast.ingest")

# Tansu joins a group in ~3 s with these, ~23 s with kafka-python's defaults (platform notes).
GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
parse = pipeline.parse  # the message rule, where the tests and benchmarks have always found it


@dataclass(frozen=True)
class IngestConfig:
    """How one worker runs; the topics, database and reward weights come from ``Settings``."""

    group_id: str = "recast-ingest"
    batch_size: int = 2000  # 1000: 9.9k events/s, 2000: 10.9k, 5000: 11.5k (BENCHMARKS.md)
    poll_timeout_ms: int = 500
    lateness_s: int = 300  # how long after a window ends (in event time) late outcomes still count
    max_events: int | None = None  # stop after this many messages (tests, benchmarks)
    max_seconds: float | None = None  # stop after this long
    idle_exit_s: float | None = None  # stop after this long with partitions assigned and nothing to read
    # Caught up and idle this long: event time has reached the wall clock, so this worker's partitions move
    # to now, and once every partition of the group is there groups whose windows ended close. Without it a
    # quiet night would leave the evening's groups open until the morning's first event, and the refresh would
    # wait for them. None: the watermark follows events only.
    idle_advance_s: float | None = 30.0
    alive_path: Path | None = Path("/tmp/recast-ingest.alive")  # touched after every committed batch
    retry_s: float = 1.0  # wait after a database error before trying the batch again
    log_every_s: float = 10.0
    # ANALYZE after this many messages, then at every doubling (tables that doubled need fresh statistics).
    analyze_first_at: int = 10_000
    # The catalog's item ids: an outcome on another item is a dead letter, as the API refuses it (`recast ingest`
    # passes the data set's; None: item ids are not checked).
    known_items: frozenset[str] | None = None
    metrics_port: int = 0  # the worker's Prometheus endpoint (0: none)
    metrics_host: str = "127.0.0.1"

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.analyze_first_at < 1:
            raise ValueError(f"analyze_first_at must be >= 1, got {self.analyze_first_at}")
        if self.lateness_s < 0:
            raise ValueError(f"lateness_s must be >= 0, got {self.lateness_s}")
        if self.idle_advance_s is not None and self.idle_advance_s <= 0:
            raise ValueError(f"idle_advance_s must be > 0 (or None: never), got {self.idle_advance_s}")


@dataclass
class IngestStats:
    messages: int = 0
    batches: int = 0
    impressions: int = 0
    outcomes: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    credited: int = 0
    closed: int = 0
    idle_advances: int = 0  # idle transactions that moved this worker's partitions to the wall clock
    db_retries: int = 0
    seconds: float = 0.0
    last_commit_unix: float | None = None  # wall time of the last committed batch (benchmarks end there)
    watermark: datetime | None = None  # the group's shared watermark after this worker's last transaction

    def add(self, result) -> None:
        for name in ("impressions", "outcomes", "duplicates", "dead_letters", "credited", "closed"):
            setattr(self, name, getattr(self, name) + getattr(result, name))

    def summary(self) -> dict:
        d = dict(vars(self))
        d["events_per_s"] = round(self.messages / self.seconds, 1) if self.seconds else 0.0
        d["watermark"] = self.watermark.isoformat() if self.watermark else None
        return d


def known_items(settings: Settings) -> frozenset[str] | None:
    """The catalog's item ids; None, with a warning, when no data set is there."""
    from recast.dataset import load_catalog

    try:
        return frozenset(item.item_id for item in load_catalog(settings.data_dir).items)
    except Exception as exc:  # no data set mounted: every item id is taken as it comes
        log.warning("no catalog at %s (%s): item ids are not checked", settings.data_dir, exc)
        return None


def _touch(path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def make_consumer(settings: Settings, config: IngestConfig):
    from kafka import KafkaConsumer

    return KafkaConsumer(
        settings.impressions_topic,
        settings.outcomes_topic,
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        group_id=config.group_id,
        client_id=f"{config.group_id}-worker",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=config.batch_size,
        **GROUP_TIMEOUTS,
    )


def run(settings: Settings, config: IngestConfig) -> IngestStats:
    """Consume until a stop condition of ``config`` holds (forever without one).

    Two stages overlap: while one batch is written (its database transaction, in a writer
    thread), the next is fetched and parsed here. Batches still commit strictly in order: a
    batch's transaction starts only after the previous one's offsets were committed, and a
    failed write rewinds to the failed batch and drops the one read ahead of it.
    """
    worker = _Worker(settings, config)
    try:
        worker.loop()
    finally:
        worker.close()
    return worker.stats


class _Worker:
    """The loop's state: the consumer, the writer thread, the batch in flight and this worker's cutoff."""

    def __init__(self, settings: Settings, config: IngestConfig):
        from concurrent.futures import ThreadPoolExecutor

        from sqlalchemy import create_engine

        self.settings, self.config = settings, config
        # Custom plans: psycopg prepares a statement after five runs, and Postgres's generic plan for the
        # pending-outcomes lookup (user = ANY(array), a time range) scanned the table: 21 ms a batch at 100k
        # events instead of 4.
        self.engine = create_engine(settings.database_url, pool_pre_ping=True,
                                    connect_args={"options": "-c plan_cache_mode=force_custom_plan"})  # fmt: skip
        self.consumer = make_consumer(settings, config)
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
        self.partitions = PartitionTracker((settings.impressions_topic, settings.outcomes_topic))
        self.stats, self.t0 = IngestStats(), time.monotonic()
        self.inflight: Batch | None = None
        self.cutoff: datetime | None = None  # this worker's last closing cutoff: it never moves back
        self.clean = False
        self.metrics = None
        if config.metrics_port:
            from learner.ingest.metrics import serve_metrics

            self.metrics = serve_metrics(config.metrics_host, config.metrics_port, self.snapshot)

    def snapshot(self) -> dict:
        return {"stats": self.stats, "lag": dict(self.partitions.lag), "watermark": self.stats.watermark}

    def loop(self) -> None:
        config, stats = self.config, self.stats
        _tune_gc()
        last_data = last_log = time.monotonic()
        last_advance = float("-inf")
        analyze_at = config.analyze_first_at
        _touch(config.alive_path)
        while True:
            if config.max_seconds is not None and time.monotonic() - self.t0 >= config.max_seconds:
                break
            read = stats.messages + (self.inflight.size if self.inflight else 0)
            if config.max_events is not None and read >= config.max_events:
                break
            polled = self.consumer.poll(timeout_ms=config.poll_timeout_ms, max_records=config.batch_size)
            self.partitions.look(self.consumer, force=self.partitions.holding_data is None)
            if not any(polled.values()):
                if self.inflight is not None:  # nothing new: finish the batch being written before idling
                    self._finish(self.inflight)
                    self.inflight = None
                    continue
                _touch(config.alive_path)  # idle but alive
                idle = time.monotonic() - last_data
                if not self.consumer.assignment():
                    last_data = time.monotonic()  # still joining: not idle yet
                elif config.idle_exit_s is not None and idle >= config.idle_exit_s:
                    break
                elif config.idle_advance_s is not None and idle >= config.idle_advance_s:
                    if time.monotonic() - last_advance >= config.idle_advance_s and self._advance_idle():
                        last_advance = time.monotonic()
                continue
            last_data = time.monotonic()
            batch = pipeline.prepare(polled, self.settings, config.known_items)
            if read + batch.size >= analyze_at:  # statistics at 10k, 20k, 40k, ... events read by this worker
                batch.analyze, analyze_at = True, 2 * analyze_at
            if self.inflight is not None:
                ok = self._finish(self.inflight, ahead=batch)
                self.inflight = None
                if not ok:
                    continue
            self._submit(batch)
            if time.monotonic() - last_log >= config.log_every_s:
                last_log = time.monotonic()
                stats.seconds = last_log - self.t0
                log.info("progress %s", stats.summary())
        if self.inflight is not None:
            self._finish(self.inflight)
            self.inflight = None
        self.clean = True

    def _submit(self, batch: Batch) -> None:
        batch.caught_up, batch.previous = self.partitions.caught_up(self.consumer), self.cutoff
        batch.future = self.writer.submit(pipeline.write, self.engine, batch, self.settings, self.config.group_id,
                                          self.config.lateness_s, self.partitions.holding_data)  # fmt: skip
        self.inflight = batch

    def _finish(self, batch: Batch, ahead: Batch | None = None) -> bool:
        """Wait for the batch's transaction, then commit its offsets; False when it must be read again."""
        written = pipeline.wait(batch, self.config.retry_s)
        if written is None:
            self.stats.db_retries += 1
            pipeline.rewind(self.consumer, batch, ahead)
            return False
        pipeline.commit(self.consumer, batch)
        self._count(written, batch.size)
        self.stats.last_commit_unix = time.time()
        _touch(self.config.alive_path)
        return True

    def _count(self, written: Written, messages: int) -> None:
        self.cutoff, self.stats.watermark = written.cutoff, written.watermark
        self.stats.messages += messages
        self.stats.batches += 1 if messages else 0
        self.stats.add(written.result)

    def _advance_idle(self) -> bool:
        """Caught up and idle: move this worker's partitions to the wall clock and close what that closes (one
        transaction, nothing read, no offsets to commit). A database error is left for the next idle turn."""
        from sqlalchemy.exc import InterfaceError, OperationalError

        caught_up = self.partitions.caught_up(self.consumer)
        if not caught_up:
            return False
        batch = Batch({}, [], [], [], {}, caught_up=caught_up, idle=True, previous=self.cutoff)
        try:
            written = pipeline.write(self.engine, batch, self.settings, self.config.group_id, self.config.lateness_s,
                                     self.partitions.holding_data)  # fmt: skip
        except (OperationalError, InterfaceError) as exc:
            log.warning("idle watermark advance failed, trying again later: %s", exc.orig or exc)
            return False
        self._count(written, 0)
        self.stats.idle_advances += 1
        return True

    def close(self) -> None:
        # On an error the batch in flight is left uncommitted: it comes again, and the unique keys dedupe it.
        self.writer.shutdown(wait=True)
        self.consumer.close(autocommit=False)
        self.engine.dispose()
        if self.metrics is not None:
            server, thread = self.metrics
            server.shutdown()
        if not self.clean:
            log.error("stopped on an error after %s", self.stats.summary())
        self.stats.seconds = time.monotonic() - self.t0
        log.info("stopped %s", self.stats.summary())


def _tune_gc() -> None:
    """Move start-up objects out of the collector's way and collect less often.

    Every message allocates a few dozen short-lived objects (a pydantic event, rows, dicts);
    with the default threshold the cyclic collector ran thousands of times a batch and took
    about a third of the worker's CPU. None of these objects form cycles, so little is lost."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
