"""What a refresh records for the audit: the repair ledger's rows and the run's snapshot of figures.

:func:`build` turns what the refresh already has (the window's groups, the RL step's repair decisions,
the gate's ranks and lists on the window slice) into ledger rows and :mod:`learner.audit.figures`'s
figures; :func:`write` inserts both on the caller's connection, which is the run's final transaction
(``learner/refresh/run.py``), so a run's ledger and snapshot exist exactly when its final row does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Connection, insert

from learner.audit.figures import AuditConfig, GroupFacts, RepairFacts, SliceRow, audit_figures
from learner.refresh.data import LoggedGroup
from recast.feedback import LoggedList, target
from recast.recommender import Recommender
from recast.segments import SegmentRules, segments_of
from recast.signals.repair import REPAIRED, UNREPAIRABLE
from schemas.audit import LEDGER, SNAPSHOTS
from schemas.settings import Settings

log = logging.getLogger("recast.audit")


@dataclass
class AuditRecord:
    ledger: list[dict]  # repair_ledger rows, without run_id
    figures: dict

    @property
    def flagged(self) -> list[str]:
        return self.figures["flagged"]


def rules(settings: Settings) -> SegmentRules:
    return SegmentRules(settings.audit_new_max_history, settings.audit_loyal_min_history)


def config(settings: Settings, min_rows: int, resamples: int, seed: int) -> AuditConfig:
    """The figures' settings; ``min_rows``, ``resamples`` and ``seed`` are the gate's (RefreshConfig)."""
    return AuditConfig(settings.audit_disparity_threshold, settings.audit_min_groups, min_rows, resamples, seed)


def anchor_ranks(recommender: Recommender | None, contexts: list[tuple[tuple[int, ...], int]],
                 batch_size: int = 64) -> dict[tuple[tuple[int, ...], int], int | None]:  # fmt: skip
    """(history, anchor) -> the anchor's 1-based rank in the policy's beam (None: beyond it, or no model)."""
    out: dict[tuple[tuple[int, ...], int], int | None] = dict.fromkeys(contexts)
    if recommender is None:
        return out
    for start in range(0, len(contexts), batch_size):
        chunk = contexts[start : start + batch_size]
        beams = recommender.policy([list(h) for h, _ in chunk])
        for row, (history, anchor) in enumerate(chunk):
            items = [i for i, _ in beams.top(row)]
            out[(history, anchor)] = items.index(anchor) + 1 if anchor in items else None
    return out


def build(groups: list[LoggedGroup], lists: list[LoggedList], repair_log: list[dict], slice_groups: list[LoggedGroup],
          slice_lists: list[LoggedList], slice_ranks: dict | None, item_ids: list[str], categories: dict[str, str],
          segment_rules: SegmentRules, audit: AuditConfig, parent: Recommender | None,
          child: Recommender | None) -> AuditRecord:  # fmt: skip
    """The ledger rows and figures of one refresh.

    ``groups``/``lists``: the training groups, read and converted (aligned); ``repair_log``: the RL step's
    decisions; ``slice_*``: the gate's window slice, and ``slice_ranks`` its ``{"current", "candidate"}``
    ranks and lists from :func:`learner.refresh.gate.ranks` (None when the gate scored nothing)."""
    segments = {g.request_id: segments_of(g.segment, g.history, categories, segment_rules) for g in groups}
    history = {x.request_id: x.history for x in lists}
    repaired = [e for e in repair_log if e["status"] == REPAIRED]
    unrepairable = {e["request_id"] for e in repair_log if e["status"] == UNREPAIRABLE}
    keys = sorted({(history[e["request_id"]], e["anchor_item"]) for e in repaired})
    before, after = anchor_ranks(parent, keys), anchor_ranks(child, keys)
    ledger = []
    for e in repaired:
        seg, key = segments[e["request_id"]], (history[e["request_id"]], e["anchor_item"])
        ledger.append({
            "request_id": e["request_id"], "step": e["step"], "segment": seg["request"],
            "history_segment": seg["history"], "category": seg["category"], "anchor_item": item_ids[e["anchor_item"]],
            "anchor_source": e["anchor_source"], "replaced_item": item_ids[e["replaced_item"]],
            "anchor_logprob": e["anchor_logprob"], "replaced_logprob": e["replaced_logprob"],
            "anchor_rank_before": before[key], "anchor_rank_after": after[key],
        })  # fmt: skip
    facts = [GroupFacts(g.request_id, segments[g.request_id], g.rewards, g.request_id in unrepairable)
             for g in groups]  # fmt: skip
    repairs = [RepairFacts(e["request_id"], e["anchor_source"]) for e in repaired]
    figures = audit_figures(facts, repairs, _slice_rows(slice_groups, slice_lists, slice_ranks, categories,
                                                        segment_rules), len(item_ids), audit)  # fmt: skip
    return AuditRecord(ledger, figures)


def _slice_rows(groups: list[LoggedGroup], lists: list[LoggedList], ranks: dict | None, categories: dict[str, str],
                segment_rules: SegmentRules) -> list[SliceRow]:  # fmt: skip
    """The gate's window rows (the slice's lists with a target, in order) with their segments, ranks and lists."""
    if not ranks:
        return []
    scored = [g for g, x in zip(groups, lists) if target(x) is not None]
    current, candidate = ranks["current"], ranks["candidate"]
    if len(scored) != len(current["served"]):
        raise ValueError(f"the gate scored {len(current['served'])} window rows, the slice has {len(scored)}")
    return [SliceRow(segments_of(g.segment, g.history, categories, segment_rules), current["served"][n],
                     candidate["served"][n], tuple(current["lists"][n]), tuple(candidate["lists"][n]))
            for n, g in enumerate(scored)]  # fmt: skip


def write(conn: Connection, run_id: int, record: AuditRecord, version: str | None, parent: str | None,
          decision: str | None) -> None:  # fmt: skip
    """The run's ledger rows and snapshot, on the caller's (the run's final) transaction."""
    if record.ledger:
        conn.execute(insert(LEDGER), [{"run_id": run_id, **row} for row in record.ledger])
    conn.execute(insert(SNAPSHOTS).values(run_id=run_id, version=version, parent_version=parent, decision=decision,
                                          flagged=record.flagged, figures=record.figures))  # fmt: skip
    if record.flagged:
        log.warning("refresh %d: audit flags %s", run_id, ", ".join(record.flagged))
