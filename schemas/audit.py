"""The audit's reads, defined once for the two processes that serve them: the admin API
(``serving/audit.py``) and ``recast audit`` (the CLI). Filters arrive as :class:`AuditFilter`; a bad one
raises :class:`AuditFilterError` with the reason (the API answers 422 with it, the CLI exits 2).
Nothing here connects: these are SQLAlchemy Core statements for the caller's connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import Select, and_, func, or_, select

from schemas.tables import AuditSnapshot, RepairLedgerRow, TrainingRun

LEDGER = RepairLedgerRow.__table__
SNAPSHOTS = AuditSnapshot.__table__
RUNS = TrainingRun.__table__
DIMENSIONS = ("request", "history", "category")  # recast.segments.DIMENSIONS (schemas imports none of ours)
LEDGER_COLUMN = {"request": "segment", "history": "history_segment", "category": "category"}
MAX_LIMIT = 500


class AuditFilterError(ValueError):
    """A filter that cannot be applied; the message says why."""


@dataclass(frozen=True)
class AuditFilter:
    run_id: int | None = None
    version: str | None = None  # the candidate a run trained
    segment: str | None = None  # "dimension:segment" (e.g. "history:new") or a bare segment (any dimension)
    since: datetime | None = None  # the repair's (or the snapshot's) time, inclusive
    until: datetime | None = None  # ... exclusive
    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        if self.run_id is not None and self.run_id < 1:
            raise AuditFilterError(f"run must be a run id (>= 1), got {self.run_id}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise AuditFilterError(f"{name} needs a timezone (e.g. 2026-12-01T00:00:00Z), got {value.isoformat()}")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise AuditFilterError(f"since ({self.since.isoformat()}) must be before until ({self.until.isoformat()})")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise AuditFilterError(f"limit must lie in 1..{MAX_LIMIT}, got {self.limit}")
        if self.offset < 0:
            raise AuditFilterError(f"offset must be >= 0, got {self.offset}")
        self.dimension_and_segment()

    def dimension_and_segment(self) -> tuple[str | None, str | None]:
        """``"history:new"`` -> ``("history", "new")``; ``"web"`` -> ``(None, "web")``: any dimension.

        >>> AuditFilter(segment="history:new").dimension_and_segment()
        ('history', 'new')
        >>> AuditFilter(segment="age:young")
        Traceback (most recent call last):
        ...
        schemas.audit.AuditFilterError: segment 'age:young': the dimension must be one of request, history, category
        """
        if self.segment is None:
            return None, None
        dimension, sep, name = self.segment.partition(":")
        if not sep:
            dimension, name = None, self.segment
        elif dimension not in DIMENSIONS:
            raise AuditFilterError(f"segment {self.segment!r}: the dimension must be one of {', '.join(DIMENSIONS)}")
        if not name.strip():
            raise AuditFilterError(f"segment {self.segment!r}: name a segment, e.g. history:new")
        return dimension, name

    def matches(self, dimension: str, segment: str) -> bool:
        """Whether a snapshot's segment entry passes the segment filter."""
        want_dimension, want = self.dimension_and_segment()
        return want is None or (segment == want and want_dimension in (None, dimension))


def _ledger_where(f: AuditFilter) -> list:
    c = LEDGER.c
    where = []
    if f.run_id is not None:
        where.append(c.run_id == f.run_id)
    if f.version is not None:
        where.append(c.run_id.in_(select(RUNS.c.id).where(RUNS.c.result_version == f.version)))
    dimension, segment = f.dimension_and_segment()
    if segment is not None:
        columns = [LEDGER_COLUMN[dimension]] if dimension else list(LEDGER_COLUMN.values())
        where.append(or_(*[c[name] == segment for name in columns]))
    if f.since is not None:
        where.append(c.created_at >= f.since)
    if f.until is not None:
        where.append(c.created_at < f.until)
    return where


def repairs(f: AuditFilter) -> Select:
    """One page of ledger rows, oldest first."""
    return select(LEDGER).where(and_(True, *_ledger_where(f))).order_by(LEDGER.c.id).limit(f.limit).offset(f.offset)


def repairs_total(f: AuditFilter) -> Select:
    return select(func.count()).select_from(LEDGER).where(and_(True, *_ledger_where(f)))


def _snapshot_where(f: AuditFilter) -> list:
    c = SNAPSHOTS.c
    where = []
    if f.run_id is not None:
        where.append(c.run_id == f.run_id)
    if f.version is not None:
        where.append(c.version == f.version)
    if f.since is not None:
        where.append(c.created_at >= f.since)
    if f.until is not None:
        where.append(c.created_at < f.until)
    return where


def snapshots(f: AuditFilter, newest_first: bool = True) -> Select:
    """One page of runs' audit snapshots (the segment filter applies to each snapshot's entries)."""
    order = SNAPSHOTS.c.run_id.desc() if newest_first else SNAPSHOTS.c.run_id
    return select(SNAPSHOTS).where(and_(True, *_snapshot_where(f))).order_by(order).limit(f.limit).offset(f.offset)


def snapshots_total(f: AuditFilter) -> Select:
    return select(func.count()).select_from(SNAPSHOTS).where(and_(True, *_snapshot_where(f)))


class RepairOut(BaseModel):
    """A ledger row as the API shows it."""

    id: int
    run_id: int
    request_id: str
    step: int
    segment: str = Field(description="The request's segment ('unknown' when the storefront sent none).")
    history_segment: str = Field(description="new | returning | loyal")
    category: str = Field(description="The history's top-level category, or 'unknown'.")
    anchor_item: str
    anchor_source: str = Field(description="organic_purchase | organic_add_to_cart | organic_click | offline_target")
    replaced_item: str
    anchor_logprob: float
    replaced_logprob: float
    anchor_rank_before: int | None = Field(description="1-based rank under the parent's policy; null: beyond the beam")
    anchor_rank_after: int | None = Field(description="1-based rank under the child's policy; null: beyond the beam")
    created_at: datetime


class RunAudit(BaseModel):
    """One refresh's audit snapshot, its segment entries filtered."""

    run_id: int
    version: str | None
    parent_version: str | None
    decision: str | None
    created_at: datetime
    flagged: list[str]
    config: dict = Field(description="The figures' settings: disparity threshold, min groups, resamples, seed.")
    overall: dict
    segments: list[dict]


class Page(BaseModel):
    total: int = Field(description="Matches in all, over every page.")
    offset: int
    limit: int
    next_offset: int | None = Field(description="The offset of the next page; null on the last one.")


class RepairsPage(Page):
    repairs: list[RepairOut]


class SegmentsPage(Page):
    runs: list[RunAudit]


def page(total: int, f: AuditFilter) -> dict:
    after = f.offset + f.limit
    return {"total": total, "offset": f.offset, "limit": f.limit, "next_offset": after if after < total else None}


def run_audit(row, f: AuditFilter) -> RunAudit:
    """A snapshot row as the API and the CLI show it, keeping the segment entries the filter names."""
    figures = row.figures
    kept = [s for s in figures["segments"] if f.matches(s["dimension"], s["segment"])]
    return RunAudit(run_id=row.run_id, version=row.version, parent_version=row.parent_version,
                    decision=row.decision, created_at=row.created_at, flagged=list(row.flagged),
                    config=figures["config"], overall=figures["overall"], segments=kept)  # fmt: skip
