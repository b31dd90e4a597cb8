"""What one worker knows about its partitions: which hold data, which are quiet, and how far behind it is.

- *Holding data* (end offset past the beginning): such a partition must have a watermark row before any
  group closes (:mod:`learner.ingest.watermarks`). Looked up every ``refresh_s``, with the lag.
- *Quiet*: assigned to this worker and no record from it for ``idle_advance_s`` while the worker polled.
  The fetcher asks every assigned partition in each fetch, so one with unread records would have
  yielded some by then: the worker has read it to its end, and its event time may move to the wall
  clock. With every partition quiet this is the idle advance of a caught-up worker.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger("recast.ingest")

Partition = tuple[str, int]


@dataclass
class PartitionTracker:
    topics: tuple[str, ...]
    idle_advance_s: float | None
    refresh_s: float = 5.0
    holding_data: set[Partition] | None = None  # None until the first successful look-up
    lag: dict[Partition, int] = field(default_factory=dict)  # end offset - position, of the assigned partitions
    _last_record: dict[Partition, float] = field(default_factory=dict)
    _assigned_at: dict[Partition, float] = field(default_factory=dict)
    _looked_at: float = float("-inf")

    def saw(self, polled: dict) -> None:
        now = time.monotonic()
        for tp, records in polled.items():
            if records:
                self._last_record[(tp.topic, tp.partition)] = now

    def quiet(self, consumer) -> set[Partition]:
        """The assigned partitions with no record for ``idle_advance_s`` (none when the advance is off)."""
        if self.idle_advance_s is None:
            return set()
        now = time.monotonic()
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        self._assigned_at = {p: self._assigned_at.get(p, now) for p in assigned}  # a new owner waits a full period
        return {p for p in assigned
                if now - max(self._last_record.get(p, float("-inf")), self._assigned_at[p]) >= self.idle_advance_s}

    def look(self, consumer, force: bool = False) -> None:
        """Refresh which partitions hold data and the assigned ones' lag (every ``refresh_s``; a failed
        look-up keeps what was known)."""
        if not force and time.monotonic() - self._looked_at < self.refresh_s:
            return
        from kafka import TopicPartition

        self._looked_at = time.monotonic()
        try:
            parts = [TopicPartition(t, p) for t in self.topics for p in sorted(consumer.partitions_for_topic(t) or ())]
            if not parts:
                return
            ends, begins = consumer.end_offsets(parts), consumer.beginning_offsets(parts)
            self.holding_data = {(tp.topic, tp.partition) for tp in parts if ends[tp] > begins[tp]}
            self.lag = {(tp.topic, tp.partition): max(0, ends[tp] - consumer.position(tp))
                        for tp in consumer.assignment() if tp in ends}  # fmt: skip
        except Exception as exc:  # the broker away: closing waits on the last known set
            log.warning("partition offsets unavailable: %s", exc)
