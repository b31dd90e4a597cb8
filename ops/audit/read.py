"""The stored audit snapshots a report or table shows: the chosen run and the runs before it."""

from __future__ import annotations

from sqlalchemy import Connection

from schemas import audit as statements
from schemas.audit import AuditFilter


def snapshots_up_to(conn: Connection, f: AuditFilter, runs: int = 30) -> list[dict]:
    """Up to ``runs`` snapshots, oldest first, ending with the newest one ``f`` selects (its run, version and
    segment filters; the segment filter applies to every run's entries). Raises LookupError when none does."""
    chosen = conn.execute(statements.snapshots(AuditFilter(f.run_id, f.version, f.segment, f.since, f.until,
                                                           limit=1))).first()  # fmt: skip
    if chosen is None:
        wanted = " ".join(x for x in (f"run {f.run_id}" if f.run_id else "", f"version {f.version}" if f.version
                                      else "") if x)  # fmt: skip
        raise LookupError(f"no audit snapshot{' for ' + wanted if wanted else ''} (a refresh stores one when it "
                          "trains a candidate)")  # fmt: skip
    every = AuditFilter(segment=f.segment, limit=min(max(runs, 1), statements.MAX_LIMIT))
    rows = conn.execute(statements.snapshots(every).where(statements.SNAPSHOTS.c.run_id <= chosen.run_id)).all()
    return [statements.run_audit(r, f).model_dump() for r in reversed(rows)]
