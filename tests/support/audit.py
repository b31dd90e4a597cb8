"""Two refreshes' audit records written into a real, migrated Postgres as a refresh leaves them (runs, registry
rows, reward groups, ledger rows, snapshots), for the tests of the audit's readers: the admin API and the CLI.

Run 1 (v-a -> v-b, published) trained on r1-r6 and repaired r1, r2 (both web, new) and r3 (app): request:web
and history:new (the same two groups) are flagged, their repaired share 1.0 against the run's 0.5.
Run 2 (v-b -> v-c, rejected) trained on r3-r6 and repaired r3 and r5 (no segment sent); nothing is flagged.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, insert

from learner.audit.figures import AuditConfig, GroupFacts, RepairFacts, SliceRow, audit_figures
from schemas.tables import AuditSnapshot, ImpressionRow, ModelVersion, RepairLedgerRow, RewardGroup, TrainingRun
from tests.support.paths import ROOT

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
CONFIG = AuditConfig(threshold=0.3, min_groups=2, resamples=200, seed=0)
SEGMENTS = {  # request_id -> (request segment, history segment, category)
    "r1": ("web", "new", "Tools"), "r2": ("web", "new", "Tools"), "r3": ("app", "returning", "unknown"),
    "r4": ("app", "returning", "unknown"), "r5": ("unknown", "loyal", "unknown"), "r6": ("app", "returning", "Tools"),
}  # fmt: skip
# (run, request_id, anchor source, anchor rank before, after)
REPAIRS = [(1, "r1", "organic_purchase", None, 4), (1, "r2", "organic_click", 12, 3), (1, "r3", "organic_click", 7, 7),
           (2, "r3", "organic_purchase", 9, 2), (2, "r5", "organic_add_to_cart", None, None)]  # fmt: skip


@dataclass(frozen=True)
class Seeded:
    run_ids: tuple[int, int]
    versions: tuple[str, str, str]
    ledger_times: tuple[datetime, datetime]  # when each run's rows were written


def _facts(ids: list[str], repaired: list[tuple[str, str]], row_ranks: list[tuple[int | None, int | None]]) -> dict:
    def seg(rid):
        return dict(zip(("request", "history", "category"), SEGMENTS[rid]))

    groups = [GroupFacts(rid, seg(rid), (0.0, 0.0) if rid in dict(repaired) else (1.0, 0.0)) for rid in ids]
    rows = [SliceRow(seg(rid), p, c, (1, 2), (1, 3)) for rid, (p, c) in zip(ids, row_ranks)]
    return audit_figures(groups, [RepairFacts(r, s) for r, s in repaired], rows, 100, CONFIG)


def seed_audit(url: str) -> Seeded:
    engine = create_engine(url)
    versions = ("v-a", "v-b", "v-c")
    with engine.begin() as conn:
        for v, status in zip(versions, ("retired", "active", "rejected")):
            conn.execute(insert(ModelVersion.__table__).values(version=v, path=f"/m/{v}", sha256="0" * 64,
                                                               status=status))  # fmt: skip
        for n, (rid, (segment, _, _)) in enumerate(SEGMENTS.items()):
            opened = T0 - timedelta(hours=6) + timedelta(minutes=n)
            conn.execute(insert(ImpressionRow.__table__).values(
                request_id=rid, user_id=f"u{n}", segment="default" if segment == "unknown" else segment,
                history=["1"] * (n + 1), items=[{"item_id": "9", "score": 0.0, "rank": 1}], model_version="v-a",
                schema_version=1, ts=opened))  # fmt: skip
            conn.execute(insert(RewardGroup.__table__).values(
                request_id=rid, user_id=f"u{n}", segment="default" if segment == "unknown" else segment,
                model_version="v-a", history=["1"] * (n + 1), items=["9"], rewards=[0.0], organic_positives=[],
                all_zero=True, window_open=False, opened_at=opened, closes_at=opened, closed_at=opened))  # fmt: skip
        run_ids, times = [], (T0, T0 + timedelta(days=1))
        for n, (parent, child, decision) in enumerate((("v-a", "v-b", "published"), ("v-b", "v-c", "rejected"))):
            run_ids.append(conn.execute(insert(TrainingRun.__table__).values(
                kind="refresh", status="succeeded", base_version=parent, result_version=child, decision=decision,
                started_at=times[n] - timedelta(minutes=5), finished_at=times[n]).returning(TrainingRun.id)
            ).scalar_one())  # fmt: skip
        for run, rid, source, before, after in REPAIRS:
            request, history, category = SEGMENTS[rid]
            conn.execute(insert(RepairLedgerRow.__table__).values(
                run_id=run_ids[run - 1], request_id=rid, step=0, segment=request, history_segment=history,
                category=category, anchor_item="42", anchor_source=source, replaced_item="7", anchor_logprob=-6.5,
                replaced_logprob=-3.25, anchor_rank_before=before, anchor_rank_after=after,
                created_at=times[run - 1]))  # fmt: skip
        same = [(0, 0)] * 6  # the child ranks every slice row as the parent did: no metric gap anywhere
        snapshots = [_facts(["r1", "r2", "r3", "r4", "r5", "r6"], [(rid, src) for run, rid, src, *_ in REPAIRS
                                                                   if run == 1], same),
                     _facts(["r3", "r4", "r5", "r6"], [(rid, src) for run, rid, src, *_ in REPAIRS if run == 2],
                            same[:4])]  # fmt: skip
        for n, figures in enumerate(snapshots):
            conn.execute(insert(AuditSnapshot.__table__).values(
                run_id=run_ids[n], version=versions[n + 1], parent_version=versions[n],
                decision=("published", "rejected")[n], flagged=figures["flagged"], figures=figures,
                created_at=times[n]))  # fmt: skip
    engine.dispose()
    return Seeded((run_ids[0], run_ids[1]), versions, times)


def recast_audit(*args: str, url: str) -> subprocess.CompletedProcess:
    """``recast audit ARGS`` as an operator runs it, against the database at ``url``."""
    return subprocess.run([sys.executable, "-m", "ops.cli", "audit", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "RECAST_DATABASE_URL": url})  # fmt: skip
