"""The audit's reads for the admin API: one page of the repair ledger, one page of runs' audit snapshots.

The statements are ``schemas.audit``'s (the CLI runs the same ones); this module only runs them.
"""

from __future__ import annotations

from sqlalchemy import Engine

from schemas import audit
from schemas.audit import AuditFilter


def repairs(engine: Engine, f: AuditFilter) -> dict:
    with engine.connect() as conn:
        total = conn.execute(audit.repairs_total(f)).scalar_one()
        rows = [audit.RepairOut.model_validate(dict(r._mapping)) for r in conn.execute(audit.repairs(f))]
    return {**audit.page(total, f), "repairs": rows}


def segments(engine: Engine, f: AuditFilter) -> dict:
    with engine.connect() as conn:
        total = conn.execute(audit.snapshots_total(f)).scalar_one()
        runs = [audit.run_audit(r, f) for r in conn.execute(audit.snapshots(f))]
    return {**audit.page(total, f), "runs": runs}
