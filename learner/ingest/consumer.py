"""The ingestion loop: poll a batch, write it in one database transaction, then commit the offsets.

The order is the guarantee. A crash before the database commit loses nothing (the offsets
were not committed, the batch comes again); a crash between the two commits redelivers a
batch the database already holds, and the unique keys make that a no-op. A database error
(Postgres restarting) rolls back, rewinds the consumer to the batch's first offsets and
retries, so nothing is skipped either. Malformed messages become dead letters in the same
transaction; they never stop the loop.
"""

from __future__ import annotations

import gc
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from learner.ingest.attribution import advance, close_before, watermark
from learner.ingest.store import BadMessage, BatchResult, latest_event_times, refresh_statistics, write_batch
from schemas.events import EventError, Impression, Outcome, parse_impression, parse_outcome
from schemas.settings import Settings

log = logging.getLogger("recast.ingest")

# Tansu joins a group in ~3 s with these, ~23 s with kafka-python's defaults (platform notes).
GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
MAX_SKEW_S = 300  # event times further ahead of the wall clock do not move the watermark


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
    # Caught up and idle this long: event time has reached the wall clock, so the watermark moves to now and
    # groups whose windows ended close. Without it a quiet night would leave the evening's groups open until
    # the morning's first event, and the refresh would wait for them. None: the watermark follows events only.
    idle_advance_s: float | None = 30.0
    alive_path: Path | None = Path("/tmp/recast-ingest.alive")  # touched after every committed batch
    retry_s: float = 1.0  # wait after a database error before trying the batch again
    log_every_s: float = 10.0
    # ANALYZE after this many messages, then at every doubling (tables that doubled need fresh statistics).
    analyze_first_at: int = 10_000

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
    idle_advances: int = 0  # times the watermark moved to the wall clock while caught up (see IngestConfig)
    db_retries: int = 0
    seconds: float = 0.0
    last_commit_unix: float | None = None  # wall time of the last committed batch (benchmarks end there)
    # The latest event time seen on each topic (impressions, outcomes).
    seen: tuple[datetime | None, datetime | None] = field(default=(None, None), repr=False)

    @property
    def watermark(self) -> datetime | None:
        return watermark(*self.seen)  # the module's function: the lesser of the two topics' times

    def summary(self) -> dict:
        d = {k: v for k, v in vars(self).items() if k != "seen"}
        d["events_per_s"] = round(self.messages / self.seconds, 1) if self.seconds else 0.0
        d["watermark"] = self.watermark.isoformat() if self.watermark else None
        return d


def parse(topic: str, raw: bytes | None, settings: Settings) -> Impression | Outcome:
    """A message's event, or :class:`EventError` with the reason a dead letter stores."""
    if raw is None:
        raise EventError("empty message (no value)")
    try:
        if topic == settings.impressions_topic:
            event = parse_impression(raw)
        elif topic == settings.outcomes_topic:
            event = parse_outcome(raw)
        else:
            raise EventError(f"unexpected topic {topic!r}")
    except (UnicodeDecodeError, ValueError) as exc:  # EventError is a ValueError
        raise EventError(getattr(exc, "reason", None) or f"unreadable payload: {exc}") from None
    # Valid JSON, but Postgres text and JSONB cannot hold U+0000: refused here, or the batch would fail forever.
    if b"\\u0000" in raw and _has_nul(event.model_dump()):
        raise EventError("a string contains U+0000, which Postgres cannot store")
    return event


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def split(records, settings: Settings) -> tuple[list[Impression], list[Outcome], list[BadMessage]]:
    impressions, outcomes, bad = [], [], []
    for r in records:
        try:
            event = parse(r.topic, r.value, settings)
        except EventError as exc:
            bad.append(BadMessage(r.topic, r.partition, r.offset, r.value or b"", exc.reason))
            continue
        (impressions if isinstance(event, Impression) else outcomes).append(event)
    return impressions, outcomes, bad


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
    from sqlalchemy import create_engine

    # Custom plans: psycopg prepares a statement after five runs, and Postgres's generic plan for the
    # pending-outcomes lookup (user = ANY(array), a time range) scanned the table: 21 ms a batch at 100k
    # events instead of 4.
    engine = create_engine(settings.database_url, pool_pre_ping=True,
                           connect_args={"options": "-c plan_cache_mode=force_custom_plan"})  # fmt: skip
    consumer = make_consumer(settings, config)
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
    stats, t0 = IngestStats(), time.monotonic()
    with engine.connect() as conn:
        stats.seen = latest_event_times(conn, datetime.now(UTC) + timedelta(seconds=MAX_SKEW_S))
    _tune_gc()
    last_data = last_log = time.monotonic()
    last_advance = 0.0
    _touch(config.alive_path)
    inflight: _Batch | None = None
    clean, analyze_at = False, config.analyze_first_at
    try:
        while True:
            if config.max_seconds is not None and time.monotonic() - t0 >= config.max_seconds:
                break
            read = stats.messages + (inflight.size if inflight else 0)
            if config.max_events is not None and read >= config.max_events:
                break
            polled = consumer.poll(timeout_ms=config.poll_timeout_ms, max_records=config.batch_size)
            if not any(polled.values()):
                if inflight is not None:  # nothing new: finish the batch being written before idling
                    _finish(consumer, inflight, stats, config)
                    inflight = None
                    continue
                _touch(config.alive_path)  # idle but alive
                idle = time.monotonic() - last_data
                if not consumer.assignment():
                    last_data = time.monotonic()  # still joining: not idle yet
                elif config.idle_exit_s is not None and idle >= config.idle_exit_s:
                    break
                elif config.idle_advance_s is not None and idle >= config.idle_advance_s:
                    if time.monotonic() - last_advance >= config.idle_advance_s:
                        _advance_idle(engine, stats, settings, config)
                        last_advance = time.monotonic()
                continue
            last_data = time.monotonic()
            # The watermark runs ahead with the batch being written; a failed write resets it to the committed one.
            batch = _prepare(polled, inflight.seen if inflight else stats.seen, settings, config)
            if read + batch.size >= analyze_at:  # statistics at 10k, 20k, 40k, ... events read by this worker
                batch.analyze, analyze_at = True, 2 * analyze_at
            if inflight is not None:
                ok = _finish(consumer, inflight, stats, config, ahead=batch)
                inflight = None
                if not ok:
                    continue
            batch.future = writer.submit(_write, engine, batch, settings)
            inflight = batch
            if time.monotonic() - last_log >= config.log_every_s:
                last_log = time.monotonic()
                stats.seconds = last_log - t0
                log.info("progress %s", stats.summary())
        if inflight is not None:
            _finish(consumer, inflight, stats, config)
            inflight = None
        clean = True
    finally:
        # On an error the batch in flight is left uncommitted: it comes again, and the unique keys dedupe it.
        writer.shutdown(wait=True)
        consumer.close(autocommit=False)
        engine.dispose()
        if not clean:
            log.error("stopped on an error after %s", stats.summary())
    stats.seconds = time.monotonic() - t0
    log.info("stopped %s", stats.summary())
    return stats


def _advance_idle(engine, stats: IngestStats, settings: Settings, config: IngestConfig) -> None:
    """Caught up and idle: move both topics' event time to the wall clock and close what that closes (one
    transaction, nothing read, no offsets to commit). A database error is left for the next idle turn."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    now = datetime.now(UTC)
    seen = (max(stats.seen[0] or now, now), max(stats.seen[1] or now, now))
    cutoff = close_before(watermark(*seen), config.lateness_s)
    previous = close_before(stats.watermark, config.lateness_s)
    try:
        with engine.begin() as conn:
            result = write_batch(conn, [], [], [], settings.reward_weights, settings.attribution_window_s, cutoff,
                                 previous)  # fmt: skip
    except (OperationalError, InterfaceError) as exc:
        log.warning("idle watermark advance failed, trying again later: %s", exc.orig or exc)
        return
    stats.seen, stats.closed, stats.credited = seen, stats.closed + result.closed, stats.credited + result.credited
    stats.idle_advances += 1


def _tune_gc() -> None:
    """Move start-up objects out of the collector's way and collect less often.

    Every message allocates a few dozen short-lived objects (a pydantic event, rows, dicts);
    with the default threshold the cyclic collector ran thousands of times a batch and took
    about a third of the worker's CPU. None of these objects form cycles, so little is lost."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


@dataclass
class _Batch:
    """One polled batch on its way through the pipeline."""

    polled: dict
    impressions: list[Impression]
    outcomes: list[Outcome]
    bad: list[BadMessage]
    seen: tuple[datetime | None, datetime | None]  # the watermark inputs once this batch is stored
    cutoff: datetime | None  # close groups with closes_at <= cutoff
    previous: datetime | None  # the cutoff before this batch (release held outcomes in between)
    future: Future | None = None
    analyze: bool = False  # refresh the planner's statistics after this batch

    @property
    def size(self) -> int:
        return sum(len(rs) for rs in self.polled.values())

    def first_offsets(self) -> dict:
        return {tp: min(r.offset for r in rs) for tp, rs in self.polled.items() if rs}


def _prepare(polled, seen_before, settings: Settings, config: IngestConfig) -> _Batch:
    records = [r for batch in polled.values() for r in batch]
    impressions, outcomes, bad = split(records, settings)
    now = datetime.now(UTC)
    seen = (advance(seen_before[0], [e.ts for e in impressions], now, MAX_SKEW_S),
            advance(seen_before[1], [e.ts for e in outcomes], now, MAX_SKEW_S))  # fmt: skip
    return _Batch(polled, impressions, outcomes, bad, seen, close_before(watermark(*seen), config.lateness_s),
                  close_before(watermark(*seen_before), config.lateness_s))  # fmt: skip


def _write(engine, batch: _Batch, settings: Settings) -> BatchResult:
    """The batch's one transaction (in the writer thread), then ``ANALYZE`` when the batch asks for it."""
    with engine.begin() as conn:
        result = write_batch(conn, batch.impressions, batch.outcomes, batch.bad, settings.reward_weights,
                             settings.attribution_window_s, batch.cutoff, batch.previous)  # fmt: skip
    if batch.analyze:
        with engine.connect() as conn:
            refresh_statistics(conn)
            conn.commit()
    return result


def _finish(consumer, batch: _Batch, stats: IngestStats, config: IngestConfig, ahead: _Batch | None = None) -> bool:
    """Wait for the batch's transaction, then commit its offsets; False when it must be read again.

    ``ahead``: the batch read while this one was written. On a failed write it is dropped too, and the
    consumer rewinds to the first offset of each partition of either batch."""
    from kafka.errors import CommitFailedError
    from kafka.structs import OffsetAndMetadata
    from sqlalchemy.exc import InterfaceError, OperationalError

    try:
        result = batch.future.result()
    except (OperationalError, InterfaceError) as exc:
        # The database went away (a restart, a network cut) and nothing of the batch is stored: rewind and try
        # again. Any other database error is a bug: it propagates, uncommitted.
        stats.db_retries += 1
        log.warning("database unavailable, retrying the batch in %.1f s: %s", config.retry_s, exc.orig or exc)
        rewind = {**(ahead.first_offsets() if ahead else {}), **batch.first_offsets()}
        for tp, offset in rewind.items():
            consumer.seek(tp, offset)
        time.sleep(config.retry_s)
        return False
    offsets = {tp: OffsetAndMetadata(max(r.offset for r in rs) + 1, "", -1) for tp, rs in batch.polled.items() if rs}
    try:
        consumer.commit(offsets)
    except CommitFailedError as exc:  # a rebalance took the partitions: their new owner re-reads, dedup holds
        log.warning("offset commit failed (%s); the batch is stored and will be deduplicated", exc)
    stats.seen, stats.last_commit_unix = batch.seen, time.time()
    stats.messages += batch.size
    stats.batches += 1
    for name in ("impressions", "outcomes", "duplicates", "dead_letters", "credited", "closed"):
        setattr(stats, name, getattr(stats, name) + getattr(result, name))
    _touch(config.alive_path)
    return True
