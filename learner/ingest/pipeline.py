"""One polled batch on its way through the worker: parsed (:func:`prepare`), written in one transaction
with the shared watermark (:func:`write`), then its offsets committed (:func:`finish`).

The watermark step is part of the batch's transaction: the partitions' event times move forward, the
group's watermark is read back (the least over its partitions, :mod:`learner.ingest.watermarks`) and
groups close lateness behind it. Each worker's cutoff never moves back, so held outcomes are released
exactly once per worker; two workers releasing the same held outcome is harmless, since attribution is
idempotent (rewards are maxima, organic positives keyed by event id).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Container
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from learner.ingest import watermarks
from learner.ingest.attribution import close_before
from learner.ingest.store import BadMessage, BatchResult, refresh_statistics, write_batch
from schemas.events import EventError, Impression, Outcome, event_problem, parse_impression, parse_outcome
from schemas.settings import Settings

log = logging.getLogger("recast.ingest")

Partition = tuple[str, int]


@dataclass
class Batch:
    """One polled batch (or, with nothing polled, an idle advance of the quiet partitions)."""

    polled: dict
    impressions: list[Impression]
    outcomes: list[Outcome]
    bad: list[BadMessage]
    times: dict[Partition, datetime]  # the latest usable event time of each partition in the batch
    caught_up: set[Partition] = field(default_factory=set)  # nothing unread: recorded at their topic's latest time
    idle: bool = False  # an idle advance: every caught-up partition moves to the wall clock
    previous: datetime | None = None  # this worker's cutoff before the batch (held outcomes released above it)
    future: Future | None = None
    analyze: bool = False  # refresh the planner's statistics after this batch

    @property
    def size(self) -> int:
        return sum(len(rs) for rs in self.polled.values())

    def first_offsets(self) -> dict:
        return {tp: min(r.offset for r in rs) for tp, rs in self.polled.items() if rs}


@dataclass
class Written:
    result: BatchResult
    cutoff: datetime | None  # groups with closes_at <= cutoff are closed
    watermark: datetime | None


def parse(topic: str, raw: bytes | None, settings: Settings, received: datetime | None = None,
          known_items: Container[str] | None = None) -> Impression | Outcome:  # fmt: skip
    """A message's event, or :class:`EventError` with the reason a dead letter stores.

    A well-formed event is then held to the rule the API applied before it answered 2xx
    (:func:`schemas.events.event_problem`), with ``received`` the record's Kafka timestamp, so a replay judges
    exactly as the first reading did."""
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
    if received is not None:
        problem = event_problem(event, received, known_items, max_skew_s=settings.event_max_skew_s)
        if problem is not None:
            raise EventError(problem)
    return event


def prepare(polled: dict, settings: Settings, known_items: Container[str] | None = None) -> Batch:
    """Parse a poll's records; each partition's latest event time ignores times ahead of the wall clock by more
    than the skew (one event stamped in the year 9999 must not close every group)."""
    impressions, outcomes, bad, times = [], [], [], {}
    limit = datetime.now(UTC) + timedelta(seconds=settings.event_max_skew_s)
    for records in polled.values():
        for r in records:
            received = datetime.fromtimestamp(r.timestamp / 1000, UTC) if r.timestamp and r.timestamp > 0 else None
            try:
                event = parse(r.topic, r.value, settings, received, known_items)
            except EventError as exc:
                bad.append(BadMessage(r.topic, r.partition, r.offset, r.value or b"", exc.reason))
                continue
            (impressions if isinstance(event, Impression) else outcomes).append(event)
            key = (r.topic, r.partition)
            if event.ts <= limit and (key not in times or event.ts > times[key]):
                times[key] = event.ts
    return Batch(polled, impressions, outcomes, bad, times)


def write(engine, batch: Batch, settings: Settings, group_id: str, lateness_s: int,
          holding_data: set[Partition] | None) -> Written:  # fmt: skip
    """The batch's one transaction (in the writer thread), then ``ANALYZE`` when the batch asks for it."""
    with engine.begin() as conn:
        watermarks.record(conn, group_id, batch.times)
        if batch.caught_up:
            latest = watermarks.topic_latest(conn, group_id)
            watermarks.record(conn, group_id, caught_up_marks(batch, latest, datetime.now(UTC)))
        mark = watermarks.shared(conn, group_id, holding_data)
        cutoff = close_before(mark, lateness_s)
        if batch.previous is not None and (cutoff is None or cutoff < batch.previous):
            cutoff = batch.previous  # the shared minimum can fall (a partition seen for the first time); ours not
        result = write_batch(conn, batch.impressions, batch.outcomes, batch.bad, settings.reward_weights,
                             settings.attribution_window_s, cutoff, batch.previous)  # fmt: skip
    if batch.analyze:
        with engine.connect() as conn:
            refresh_statistics(conn)
            conn.commit()
    return Written(result, cutoff, mark)


def caught_up_marks(batch: Batch, latest: dict[str, datetime], now: datetime) -> dict[Partition, datetime]:
    """Where the caught-up partitions move: to the latest time recorded on their topic (nothing unread in them,
    so they are as far as their topic has got anywhere); after an idle spell, to the wall clock."""
    out = {}
    for topic, partition in batch.caught_up:
        mark = now if batch.idle else latest.get(topic)
        if mark is not None:
            out[(topic, partition)] = mark
    return out


def rewind(consumer, batch: Batch, ahead: Batch | None) -> None:
    """Seek back to the first offset of each partition of the failed batch (and of the one read ahead)."""
    offsets = {**(ahead.first_offsets() if ahead else {}), **batch.first_offsets()}
    for tp, offset in offsets.items():
        consumer.seek(tp, offset)


def commit(consumer, batch: Batch) -> None:
    """Commit the batch's offsets; a rebalance that took its partitions leaves them to the new owner (who reads
    them again: the unique keys deduplicate)."""
    from kafka.errors import CommitFailedError
    from kafka.structs import OffsetAndMetadata

    offsets = {tp: OffsetAndMetadata(max(r.offset for r in rs) + 1, "", -1) for tp, rs in batch.polled.items() if rs}
    if not offsets:
        return
    try:
        consumer.commit(offsets)
    except CommitFailedError as exc:
        log.warning("offset commit failed (%s); the batch is stored and will be deduplicated", exc)


def wait(batch: Batch, retry_s: float) -> Written | None:
    """The batch's transaction result, or None after a database outage (nothing of it stored: read it again)."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    try:
        return batch.future.result()
    except (OperationalError, InterfaceError) as exc:
        # The database went away (a restart, a network cut). Any other database error is a bug: it propagates.
        log.warning("database unavailable, retrying the batch in %.1f s: %s", retry_s, exc.orig or exc)
        time.sleep(retry_s)
        return None
