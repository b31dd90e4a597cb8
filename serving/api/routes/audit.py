"""Audit routes (admin token): the repair ledger and each refresh's per-segment audit figures.

Both take the same filters (run, version, segment, a time range) and paginate with ``limit`` and
``offset``; a filter that cannot be applied is a 422 whose detail says why.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from schemas.audit import MAX_LIMIT, AuditFilter, AuditFilterError, RepairsPage, SegmentsPage
from serving import audit
from serving.api.deps import Admin, ServicesDep
from serving.api.responses import GUARDED, errors

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Admin])
RESPONSES = errors(*GUARDED, 422, 503, s422="A filter that cannot be applied (the detail says why)",
                   s503="The database is unreachable")  # fmt: skip


async def audit_filter(
    run: Annotated[int | None, Query(description="A training run's id.")] = None,
    version: Annotated[str | None, Query(max_length=128, description="The model version a run trained.")] = None,
    segment: Annotated[str | None, Query(max_length=200, description="dimension:segment (request, history or "
                                         "category; e.g. history:new), or a bare segment of any dimension.")] = None,
    since: Annotated[datetime | None, Query(description="From this time (with a timezone), inclusive.")] = None,
    until: Annotated[datetime | None, Query(description="Before this time (with a timezone).")] = None,
    limit: Annotated[int, Query(description=f"Page size, 1-{MAX_LIMIT}.")] = 100,
    offset: Annotated[int, Query(description="Rows to skip (the previous page's next_offset).")] = 0,
) -> AuditFilter:  # fmt: skip
    try:
        return AuditFilter(run, version, segment, since, until, limit, offset)
    except AuditFilterError as exc:
        raise HTTPException(422, str(exc)) from None


FilterDep = Annotated[AuditFilter, Depends(audit_filter)]


async def _read(services, read, f: AuditFilter) -> dict:
    from sqlalchemy.exc import OperationalError

    try:
        return await asyncio.to_thread(read, services.database(), f)
    except OperationalError as exc:  # the driver's message stays in the log: it names hosts and users
        log.warning("audit read failed: %s", exc.orig)
        raise HTTPException(503, "the database is unreachable") from None


@router.get("/repairs", response_model=RepairsPage, responses=RESPONSES,
            summary="The repair ledger: every anchor a refresh injected, oldest first")  # fmt: skip
async def repairs(f: FilterDep, services: ServicesDep) -> dict:
    return await _read(services, audit.repairs, f)


@router.get("/segments", response_model=SegmentsPage, responses=RESPONSES,
            summary="Each refresh's audit figures per segment, newest run first (flagged segments listed)")  # fmt: skip
async def segments(f: FilterDep, services: ServicesDep) -> dict:
    return await _read(services, audit.segments, f)
