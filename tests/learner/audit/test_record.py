"""A real refresh against a real Postgres records its repairs in the ledger and its audit snapshot, with the run."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import create_engine, select

from learner.refresh.run import refresh
from recast.checkpoint import load_checkpoint
from recast.dataset import load_catalog
from recast.recommender import Recommender
from schemas.tables import AuditSnapshot, RepairLedgerRow, RewardGroup, TrainingRun
from tests.support.groups import DAY0, seed_groups, shipped_rows

LEDGER, SNAPSHOTS, GROUPS, RUNS = (t.__table__ for t in (RepairLedgerRow, AuditSnapshot, RewardGroup, TrainingRun))


def read(url: str, run_id: int):
    engine = create_engine(url)
    with engine.connect() as conn:
        ledger = [dict(r._mapping) for r in conn.execute(select(LEDGER).where(LEDGER.c.run_id == run_id)
                                                         .order_by(LEDGER.c.id))]  # fmt: skip
        snapshot = conn.execute(select(SNAPSHOTS).where(SNAPSHOTS.c.run_id == run_id)).one()
        run = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).one()
        groups = {r.request_id: r for r in conn.execute(select(GROUPS))}
    engine.dispose()
    return ledger, snapshot, run, groups


def test_a_refresh_writes_one_ledger_row_per_repair_and_its_snapshot(gated, served, shipped_data, tiny_checkpoint):
    settings = gated.model_copy(update={"refresh_rl_steps": 3, "audit_min_groups": 1})
    seed_groups(settings.database_url, shipped_rows(shipped_data, 60), DAY0, segments=("web", "app", "default"),
                organic_types=("purchase", "add_to_cart", "click"))  # fmt: skip
    out = refresh(settings, now=DAY0 + timedelta(hours=2))
    assert out.status == "succeeded", out.reason
    ledger, snapshot, run, groups = read(settings.database_url, out.run_id)

    assert ledger, "the tiny policy's rollouts miss the organic targets: the RL step must have repaired some"
    assert run.counts["repairs"] == len(ledger)
    train = {rid for rid, g in groups.items() if g.opened_at < run.heldout_from}
    for row in ledger:
        group = groups[row["request_id"]]
        assert row["request_id"] in train  # the gate's slice is never trained on, so never repaired
        organic = group.organic_positives[0]
        assert (row["anchor_item"], row["anchor_source"]) == (organic["item_id"], f"organic_{organic['type']}")
        assert row["segment"] == {"default": "unknown"}.get(group.segment, group.segment)
        length = len(group.history)
        assert row["history_segment"] == ("new" if length <= 2 else "loyal" if length >= 7 else "returning")
        assert row["category"] == "unknown"  # the shipped items.json has no categories
        assert row["replaced_item"] != row["anchor_item"]  # a rolled-out candidate, displaced by the anchor
        assert row["anchor_logprob"] < 0 and row["replaced_logprob"] <= 0
        for rank in (row["anchor_rank_before"], row["anchor_rank_after"]):
            assert rank is None or 1 <= rank <= settings.beam_width
    assert len({r["anchor_source"] for r in ledger}) > 1

    # "Before" is the anchor's rank under the served (parent) policy: recomputed here for one repair.
    catalog, row = load_catalog(shipped_data), ledger[0]
    parent = Recommender.from_checkpoint(load_checkpoint(tiny_checkpoint), settings.beam_width)
    history = [catalog.index[i] for i in groups[row["request_id"]].history if i in catalog.index][-10:]
    beam = [i for i, _ in parent.policy([history]).top(0)]
    anchor = catalog.index[row["anchor_item"]]
    assert row["anchor_rank_before"] == (beam.index(anchor) + 1 if anchor in beam else None)

    # The snapshot: the run's version and decision, figures that agree with the ledger and the gate.
    assert (snapshot.version, snapshot.parent_version, snapshot.decision) == (out.version, served, out.decision)
    figures = snapshot.figures
    overall = figures["overall"]
    assert overall["groups"] == len(train) == run.counts["train_groups"]
    assert overall["repairs"] == len(ledger)
    assert overall["repaired"] == len({r["request_id"] for r in ledger}) / len(train)
    assert overall["anchor_sources"]["counts"] == {**dict.fromkeys(overall["anchor_sources"]["counts"], 0),
                                                   **Counter(r["anchor_source"] for r in ledger)}  # fmt: skip
    gate_window = run.metrics["gate"]["window"]["served"]["HR@10"]
    assert overall["metrics"]["HR@10"]["rows"] == run.metrics["gate"]["window"]["rows"]
    for key in ("delta", "low", "high"):
        assert overall["metrics"]["HR@10"][key] == gate_window[key]
    names = {(s["dimension"], s["segment"]) for s in figures["segments"]}
    assert {("request", "web"), ("request", "app"), ("request", "unknown"), ("category", "unknown")} <= names
    per_request = {s["segment"]: s for s in figures["segments"] if s["dimension"] == "request"}
    assert sum(s["groups"] for s in per_request.values()) == len(train)
    assert sum(s["repairs"] for s in per_request.values()) == len(ledger)
    assert snapshot.flagged == figures["flagged"]
