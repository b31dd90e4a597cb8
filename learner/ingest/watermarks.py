"""The watermark shared by every worker of a consumer group: one row per partition (``ingest_watermarks``).

A worker records, in the transaction that stores a batch, the latest event time it stored from each
partition of the batch (never moving a row back). A partition it has read to the end (nothing unread)
holds nothing back: it moves to the latest time recorded on its topic by any worker; after an idle spell
(``IngestConfig.idle_advance_s``) to the wall clock. Groups then close by the *least*
of those times over every partition that holds data, lateness behind it
(:func:`learner.ingest.attribution.close_before`), whichever worker closes them. So a worker far ahead
of another can no longer close a group whose outcomes still wait unread in the other's partitions, and a
single worker with one slow partition cannot either. A partition that holds data but has no row yet
(nobody has stored anything from it) holds the watermark back entirely.

The least over partitions replaces the lesser of the two topics' latest times that each worker kept
in memory before; with one partition per topic the two are the same.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert

from schemas.tables import IngestWatermark

W = IngestWatermark.__table__
Partition = tuple[str, int]  # (topic, partition)


def record(conn: Connection, group_id: str, times: dict[Partition, datetime]) -> None:
    """Move each partition's row forward to ``times[partition]`` (a row never moves back)."""
    if not times:
        return
    rows = [dict(group_id=group_id, topic=t, partition=p, event_time=ts) for (t, p), ts in sorted(times.items())]
    stmt = insert(W).values(rows)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=[W.c.group_id, W.c.topic, W.c.partition],
        set_={"event_time": func.greatest(W.c.event_time, stmt.excluded.event_time), "updated_at": func.now()},
    ))  # fmt: skip


def topic_latest(conn: Connection, group_id: str) -> dict[str, datetime]:
    """The latest event time recorded on each topic, over all of the group's partitions."""
    result = conn.execute(select(W.c.topic, func.max(W.c.event_time)).where(W.c.group_id == group_id)
                          .group_by(W.c.topic))  # fmt: skip
    return {topic: ts for topic, ts in result}


def shared(conn: Connection, group_id: str, required: set[Partition] | None) -> datetime | None:
    """The group's watermark: the least event time over its partitions; None while a partition of ``required``
    (those holding data) has no row, or when there is none at all."""
    rows = {(r.topic, r.partition): r.event_time for r in conn.execute(
        select(W.c.topic, W.c.partition, W.c.event_time).where(W.c.group_id == group_id))}  # fmt: skip
    if not rows or (required is not None and not required <= set(rows)):
        return None
    return min(rows.values())


def rows(conn: Connection, group_id: str) -> dict[Partition, datetime]:
    """Every partition's event time (for metrics and tests)."""
    result = conn.execute(select(W.c.topic, W.c.partition, W.c.event_time).where(W.c.group_id == group_id))
    return {(r.topic, r.partition): r.event_time for r in result}
