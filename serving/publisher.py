"""Publish served lists and outcomes to Kafka without blocking a response, and lose none when the broker is down.

:meth:`Publisher.publish` only puts the record on a bounded in-memory queue (a full queue spills
to the spool on disk instead of dropping). One background thread owns the Kafka producer and
does all network work:

- broker up, spool empty: send a batch from the queue, wait (bounded) for the acknowledgements
  (``acks="all"``); records that failed or timed out go to the spool and the broker is marked down;
- broker up, spool not empty: append the queued batch behind the spool and replay the spool's
  oldest segment, so records reach the broker in the order they were published; a segment is
  deleted once all of its records were acknowledged;
- broker down: move queued records to the spool and probe the broker every ``retry_s`` with a
  bounded connect; the producer is made anew when it answers (a restarted broker forgets the
  old producer's idempotence state).

Delivery is at least once: a batch that failed half-way is sent again whole, and the ingestion
side dedups on request_id / event_id. What is only in memory (the queue, a batch in flight)
is lost if the process itself is killed; :meth:`Publisher.close` moves it to the spool, and a new
``Publisher`` on the same spool directory replays what an earlier one left.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from serving.spool import Record, Spool

log = logging.getLogger("recast.publisher")


@dataclass(frozen=True)
class PublisherConfig:
    """How the publisher trades memory, latency and detection time."""

    queue_size: int = 10_000  # records held in memory before publish() spills to the spool
    batch_size: int = 500  # records per send-and-wait round
    # A dead or hung broker must be noticed in seconds, not kafka-python's 30 s / 60 s / 120 s defaults:
    # every wait below derives from this one number (request, metadata block, delivery, bootstrap).
    timeout_ms: int = 5000
    retry_s: float = 1.0  # pause between probes of a broker that is down
    fsync: bool = True  # fsync each spool append (one per batch); False survives process kills, not power loss

    def __post_init__(self):
        if self.queue_size < 1 or self.batch_size < 1:
            raise ValueError("queue_size and batch_size must be >= 1")
        if self.timeout_ms < 100:
            raise ValueError(f"timeout_ms must be >= 100 (a broker needs time to answer), got {self.timeout_ms}")

    def producer_config(self, bootstrap: str) -> dict:
        t = self.timeout_ms
        return {
            "bootstrap_servers": bootstrap.split(","),
            "client_id": "recast-serving",
            "acks": "all",  # acknowledged = replicated; only then is a record counted published
            "enable_idempotence": True,  # the producer's own retries add no duplicates
            "linger_ms": 5,  # a few ms of batching; the caller never waits for it
            "request_timeout_ms": t,  # a broker that holds a connection open but does not answer
            "max_block_ms": t,  # send() waits this long at most for metadata of a topic (broker gone)
            "delivery_timeout_ms": 2 * t,  # must exceed linger + request timeout; the worker's wait is shorter
            "bootstrap_timeout_ms": t,  # the constructor connects eagerly; bound it so probing stays bounded
            "reconnect_backoff_max_ms": 1000,  # a restarted broker is found again within a second
        }


class Publisher:
    """``publish()`` from any thread; ``stats()`` for metrics; ``close()`` at shutdown."""

    def __init__(
        self,
        bootstrap: str,
        spool_dir: Path | str,
        config: PublisherConfig | None = None,
        on_delivered: Callable[[Record], None] | None = None,
    ):
        self.bootstrap = bootstrap
        self.config = config or PublisherConfig()
        # Called from the worker thread for every acknowledged record (audits, tests); keep it fast.
        self.on_delivered = on_delivered
        self.spool = Spool(spool_dir, fsync=self.config.fsync)
        self._queue: queue.Queue[Record] = queue.Queue(self.config.queue_size)
        self._lock = threading.Lock()  # counters and broker state
        self._gate = threading.Lock()  # publish() against close()
        self._counts = dict(published=0, spooled=0, replayed=0, failed_attempts=0, reconnects=0, rejected=0, lost=0)
        self._broker_up = False
        self._producer = None
        self._closing = threading.Event()
        self._deadline = float("inf")  # when close() must be done; bounds every wait of the worker
        self._thread = threading.Thread(target=self._run, name="recast-publisher", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, settings, **kwargs) -> Publisher:
        """A publisher for ``schemas.settings.Settings`` (bootstrap, spool dir and knobs)."""
        config = PublisherConfig(
            queue_size=settings.publisher_queue_size,
            timeout_ms=settings.publisher_timeout_ms,
            retry_s=settings.publisher_retry_s,
        )
        return cls(settings.kafka_bootstrap, settings.spool_dir, config, **kwargs)

    # ------------------------------------------------------------ callers' side

    def publish(self, topic: str, key: bytes | str | None, value: bytes | str) -> None:
        """Hand a record over; returns at once (never waits for the network, at worst for a local disk write)."""
        record = Record(topic, key.encode() if isinstance(key, str) else key, _bytes(value))
        with self._gate:  # close() takes it too: nothing enters the queue after its last drain
            if not self._closing.is_set():
                try:
                    self._queue.put_nowait(record)
                    return
                except queue.Full:
                    pass
        self._spool([record])  # full queue or closed publisher: disk rather than drop

    def stats(self) -> dict:
        """A snapshot of the counters: published counts acknowledged records (replayed ones included)."""
        with self._lock:
            snapshot = dict(self._counts)
            snapshot["broker_up"] = self._broker_up
        snapshot["pending_in_spool"] = self.spool.pending()
        snapshot["queue_depth"] = self._queue.qsize()
        return snapshot

    def close(self, timeout: float = 10.0) -> None:
        """Send what can be sent within ``timeout`` seconds; everything else stays in, or goes to, the spool."""
        with self._gate:
            self._deadline = time.monotonic() + timeout
            self._closing.set()
        # The worker's waits are bounded by the deadline; the extra second covers one spool fsync.
        self._thread.join(timeout + 1.0 + self.config.timeout_ms / 1000)
        if self._thread.is_alive():
            log.error("publisher thread did not stop in time; records it holds may be lost")
        self._spool(self._drain(self.config.queue_size))  # published while the worker was stopping
        self.spool.close()

    # ------------------------------------------------------------ the worker

    def _run(self) -> None:
        next_probe = 0.0
        while not self._closing.is_set():
            try:
                if not self._broker_up and time.monotonic() >= next_probe:
                    self._connect()
                    next_probe = time.monotonic() + self.config.retry_s
                if not self._broker_up:
                    self._spool(self._drain(self.config.batch_size, wait=0.1))
                elif self.spool.pending():
                    self._spool(self._drain(self.config.batch_size))
                    self._replay_one()
                else:
                    self._deliver(self._drain(self.config.batch_size, wait=0.1))
            except Exception:  # a bug here must not stop publishing for the life of the process
                log.exception("publisher loop error; retrying in %.1f s", self.config.retry_s)
                self._mark_down()
                self._closing.wait(self.config.retry_s)
        self._finish()

    def _finish(self) -> None:
        """Closing: deliver the queue if the broker is up (bounded by the deadline), spool what is left."""
        if not self._broker_up and not self._queue.empty() and time.monotonic() < self._deadline:
            self._connect()  # closed right after start: the first probe may not have run yet
        while self._broker_up and not self.spool.pending() and time.monotonic() < self._deadline:
            batch = self._drain(self.config.batch_size)
            if not batch:
                break
            self._deliver(batch)
        self._spool(self._drain(self.config.queue_size))
        if self._producer is not None:
            _close_quietly(self._producer, max(0.0, min(1.0, self._deadline - time.monotonic())))
            self._producer = None

    def _drain(self, limit: int, wait: float = 0.0) -> list[Record]:
        batch = []
        try:
            if wait:
                batch.append(self._queue.get(timeout=wait))
            while len(batch) < limit:
                batch.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return batch

    def _spool(self, records: list[Record]) -> None:
        if not records:
            return
        try:
            self.spool.append(records)
        except OSError:  # disk full or gone: the one case where records are lost; say so loudly
            log.exception("could not spool %d records; they are lost", len(records))
            self._count(lost=len(records))
            return
        self._count(spooled=len(records))

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._counts[name] += delta

    def _connect(self) -> None:
        """Probe the broker (a TCP connect, then the producer's own bounded bootstrap) and make a producer."""
        if not any(_port_open(address, self.config.timeout_ms / 1000) for address in self.bootstrap.split(",")):
            return
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        try:
            producer = KafkaProducer(**self.config.producer_config(self.bootstrap))
        except (KafkaError, OSError) as exc:
            log.info("broker %s not ready: %s", self.bootstrap, exc)
            return
        self._producer = producer
        with self._lock:
            self._broker_up = True
            self._counts["reconnects"] += 1
        log.info("broker %s is up; %d records wait in the spool", self.bootstrap, self.spool.pending())

    def _mark_down(self) -> None:
        with self._lock:
            was_up, self._broker_up = self._broker_up, False
        if self._producer is not None:
            # Abandon what the producer still holds (it is in the spool now); a new one is made on reconnect.
            # kafka-python's close() first waits for its buffered batches (and raises if they are not done by
            # the timeout), so with a dead broker it returns only once they expire: let another thread wait.
            producer, self._producer = self._producer, None
            wait = 2 * self.config.timeout_ms / 1000 + 1.0  # delivery_timeout_ms: every batch is done by then
            threading.Thread(
                target=_close_quietly, args=(producer, wait), name="recast-producer-close", daemon=True
            ).start()
        if was_up:
            log.warning("broker %s is down; spooling to %s", self.bootstrap, self.spool.directory)

    def _send(self, records: list[Record]) -> list[Record]:
        """Send and wait (bounded) for acknowledgements; returns the records that were NOT acknowledged."""
        from kafka.errors import KafkaError, MessageSizeTooLargeError

        futures, rejected = [], []
        for i, record in enumerate(records):
            try:
                futures.append(self._producer.send(record.topic, value=record.value, key=record.key))
            except MessageSizeTooLargeError as exc:
                # No broker will ever take it; kept, it would block the spool's replay forever.
                log.error("record %r on %s rejected and dropped: %s", record.key, record.topic, exc)
                rejected.append(i)
                futures.append(None)
            except Exception as exc:  # metadata wait ran out (max_block_ms), producer closed, broker gone
                log.info("send failed after %d of %d records: %s", i, len(records), exc)
                break
        if rejected:
            self._count(rejected=len(rejected))
        wait = min(self.config.timeout_ms / 1000, max(0.1, self._deadline - time.monotonic()))
        try:
            self._producer.flush(timeout=wait)
        except KafkaError as exc:
            log.info("flush did not complete in %.1f s: %s", wait, exc)
        sent = [(r, f) for r, f in zip(records, futures, strict=False) if f is not None]
        acked = [r for r, f in sent if f.is_done and f.succeeded()]
        failed = [r for r, f in sent if not (f.is_done and f.succeeded())] + records[len(futures) :]
        self._count(published=len(acked), failed_attempts=len(failed))
        if self.on_delivered is not None:
            for record in acked:
                try:
                    self.on_delivered(record)
                except Exception:  # a listener's bug must not turn delivered records into failures
                    log.exception("on_delivered raised")
        return failed

    def _deliver(self, batch: list[Record]) -> None:
        if not batch:
            return
        failed = self._send(batch)
        if failed:
            self._spool(failed)
            self._mark_down()

    def _replay_one(self) -> None:
        segment = self.spool.oldest()
        if segment is None:
            return
        failed = self._send(segment.records) if segment.records else []
        if failed:
            self._mark_down()  # the segment stays; its acknowledged records will come again (dedup absorbs them)
            return
        self.spool.ack(segment)
        self._count(replayed=len(segment.records))


def _close_quietly(producer, timeout: float) -> None:
    from kafka.errors import KafkaError

    try:
        producer.close(timeout=timeout)
    except KafkaError as exc:
        log.info("abandoned producer did not close cleanly: %s", exc)


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _port_open(address: str, timeout: float) -> bool:
    host, _, port = address.strip().rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False
