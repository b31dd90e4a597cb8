"""What one worker knows about its partitions: which hold data, which it has read to the end, and its lag.

- *Holding data* (end offset past the beginning): such a partition must have a watermark row before any
  group closes (:mod:`learner.ingest.watermarks`). Looked up every ``refresh_s``, with the lag.
- *Caught up*: assigned to this worker, and its position is the high watermark of the last fetch
  response: nothing in it is unread right now. Such a partition does not hold event time back; it is
  recorded at the latest time this worker has stored on its topic (what one worker's watermark always
  was). A partition with unread records keeps its own, older time, and holds every worker back.
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
    refresh_s: float = 5.0
    holding_data: set[Partition] | None = None  # None until the first successful look-up
    lag: dict[Partition, int] = field(default_factory=dict)  # end offset - position, of the assigned partitions
    _looked_at: float = float("-inf")

    def caught_up(self, consumer) -> set[Partition]:
        """The assigned partitions with nothing unread: the position has reached the high watermark of the last
        fetch response, or, for a partition no fetch has answered yet (just assigned), its end offset asked now."""
        assigned = list(consumer.assignment())
        highs = {tp: consumer.highwater(tp) for tp in assigned}
        unknown = [tp for tp, high in highs.items() if high is None]
        if unknown:
            try:
                highs.update(consumer.end_offsets(unknown))
            except Exception as exc:  # the broker away: those partitions are not known to be caught up
                log.warning("end offsets unavailable: %s", exc)
        done = set()
        for tp, high in highs.items():
            try:
                if high is not None and consumer.position(tp) >= high:
                    done.add((tp.topic, tp.partition))
            except Exception:  # no position yet (being reassigned): not caught up
                continue
        return done

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
