"""The audit's figures on hand-built groups, repairs and slice rows: every figure asserted against a hand count.

Eight training groups: two web/new groups repaired (three repairs), one app group repaired once, one
unrepairable, and the one group of the unknown request segment never repaired. Eight slice rows whose
served ranks and lists are chosen so each segment's metric change and exposure is easy to count.
"""

import math

import pytest

from learner.audit.figures import AuditConfig, GroupFacts, RepairFacts, SliceRow, audit_figures
from learner.refresh import gate


def seg(request, history, category):
    return {"request": request, "history": history, "category": category}


GROUPS = [
    GroupFacts("g1", seg("web", "new", "Tools"), (0.0, 0.0)),
    GroupFacts("g2", seg("web", "new", "Tools"), (0.0, 0.0)),
    GroupFacts("g3", seg("app", "returning", "Tools"), (1.0, 0.0)),
    GroupFacts("g4", seg("app", "returning", "unknown"), (0.5, 0.0)),
    GroupFacts("g5", seg("app", "returning", "unknown"), (0.0, 0.0), unrepairable=True),
    GroupFacts("g6", seg("app", "loyal", "unknown"), (0.25, 0.25)),
    GroupFacts("g7", seg("app", "loyal", "Tools"), (0.0, 0.0)),
    GroupFacts("g8", seg("unknown", "loyal", "unknown"), (0.0, 0.0)),
]
REPAIRS = [RepairFacts("g1", "organic_purchase"), RepairFacts("g1", "organic_purchase"),
           RepairFacts("g2", "organic_click"), RepairFacts("g7", "organic_add_to_cart")]  # fmt: skip
# (segments, parent's served rank, child's, parent's list, child's list); ranks are 0-based, None: not in the top 10.
ROWS = [
    SliceRow(seg("web", "new", "Tools"), None, 0, (1, 2), (1, 2)),
    SliceRow(seg("web", "new", "Tools"), 2, 2, (1, 3), (1, 2)),
    SliceRow(seg("app", "returning", "Tools"), 0, 0, (1, 4), (1, 2)),
    SliceRow(seg("app", "returning", "unknown"), 1, None, (1, 5), (1, 3)),
    SliceRow(seg("app", "loyal", "unknown"), 4, None, (2, 6), (1, 3)),
    SliceRow(seg("app", "loyal", "Tools"), None, None, (2, 7), (1, 4)),
    SliceRow(seg("unknown", "loyal", "unknown"), 3, 5, (3, 8), (1, 4)),
    SliceRow(seg("web", "returning", "Tools"), None, 1, (1, 9), (1, 5)),
]
CONFIG = AuditConfig(threshold=0.5, min_groups=2, min_rows=1, resamples=500, seed=3)


@pytest.fixture(scope="module")
def figures():
    return audit_figures(GROUPS, REPAIRS, ROWS, catalog_size=100, config=CONFIG)


def entry(figures, name):
    dimension, segment = name.split(":")
    return next(s for s in figures["segments"] if (s["dimension"], s["segment"]) == (dimension, segment))


def test_group_figures_of_the_whole_run(figures):
    o = figures["overall"]
    assert (o["groups"], o["repairs"]) == (8, 4)
    assert (o["all_zero"], o["repaired"], o["unrepairable"]) == (5 / 8, 3 / 8, 1 / 8)
    assert o["reward_mean"] == (0.5 + 0.25 + 0.25) / 8  # g3 0.5, g4 0.25, g6 0.25: means of each served list
    assert o["anchor_sources"] == {
        "counts": {"offline_target": 0, "organic_purchase": 2, "organic_add_to_cart": 1, "organic_click": 1},
        "shares": {"offline_target": 0.0, "organic_purchase": 0.5, "organic_add_to_cart": 0.25, "organic_click": 0.25},
    }
    assert o["repaired_ratio"] == 1.0
    assert figures["largest_repaired_gap"] == {"request": 1 - 3 / 8, "history": 1 - 3 / 8, "category": 3 / 8}


def test_every_segment_is_reported_and_unknown_is_one_of_them(figures):
    names = [f"{s['dimension']}:{s['segment']}" for s in figures["segments"]]
    assert names == ["request:app", "request:unknown", "request:web", "history:loyal", "history:new",
                     "history:returning", "category:Tools", "category:unknown"]  # fmt: skip


def test_group_figures_per_segment(figures):
    web, app, unknown = entry(figures, "request:web"), entry(figures, "request:app"), entry(figures, "request:unknown")
    shares = ("groups", "all_zero", "repaired", "unrepairable", "repairs")
    assert [web[k] for k in shares] == [2, 1.0, 1.0, 0.0, 3]
    assert web["anchor_sources"]["counts"] == {"offline_target": 0, "organic_purchase": 2, "organic_add_to_cart": 0,
                                               "organic_click": 1}  # fmt: skip
    assert web["reward_mean"] == 0.0 and web["repaired_ratio"] == 1.0 / (3 / 8)
    assert [app[k] for k in shares] == [5, 2 / 5, 1 / 5, 1 / 5, 1]
    assert app["reward_mean"] == (0.5 + 0.25 + 0.25) / 5
    # A segment with no repairs at all: zero shares and an empty mix, never dropped.
    assert (unknown["groups"], unknown["all_zero"], unknown["repaired"], unknown["repairs"]) == (1, 1.0, 0.0, 0)
    assert unknown["anchor_sources"]["shares"] == dict.fromkeys(unknown["anchor_sources"]["shares"], 0.0)
    returning = entry(figures, "history:returning")
    assert (returning["groups"], returning["repaired"], returning["repairs"], returning["unrepairable"]) == (
        3, 0.0, 0, 1 / 3)
    tools = entry(figures, "category:Tools")
    assert (tools["groups"], tools["all_zero"], tools["repaired"], tools["repairs"]) == (4, 3 / 4, 3 / 4, 4)


def test_served_metrics_per_segment_under_parent_and_child(figures):
    o = figures["overall"]["metrics"]
    assert {k: (v["rows"], v["parent"], v["child"], v["delta"]) for k, v in o.items()} == {
        "HR@10": (8, 5 / 8, 5 / 8, 0.0),
        "NDCG@10": (8, pytest.approx((0.5 + 1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(5)) / 8),
                    pytest.approx((1 + 0.5 + 1 + 1 / math.log2(7) + 1 / math.log2(3)) / 8),
                    pytest.approx((1 - 1 / math.log2(6) + 1 / math.log2(7) - 1 / math.log2(5)) / 8)),
        "Pass@1": (8, 1 / 8, 2 / 8, 1 / 8),
    }  # fmt: skip
    web = entry(figures, "request:web")["metrics"]["HR@10"]
    assert (web["rows"], web["parent"], web["child"], web["delta"]) == (3, 1 / 3, 1.0, 2 / 3)
    unknown = entry(figures, "category:unknown")["metrics"]["HR@10"]
    assert (unknown["rows"], unknown["parent"], unknown["child"], unknown["delta"]) == (3, 1.0, 1 / 3, -2 / 3)
    # One row, or rows that all move alike: the interval is the difference itself.
    single = entry(figures, "request:unknown")["metrics"]["NDCG@10"]
    assert single["low"] == single["high"] == single["delta"] == pytest.approx(1 / math.log2(7) - 1 / math.log2(5))
    loyal_unknown_category = entry(figures, "category:unknown")["metrics"]["Pass@1"]
    assert (loyal_unknown_category["delta"], loyal_unknown_category["low"], loyal_unknown_category["high"]) == (0, 0, 0)
    for s in figures["segments"]:
        for m in s["metrics"].values():
            assert m["low"] <= m["delta"] <= m["high"]


def test_the_run_interval_is_the_gates(figures):
    """Same rows, resamples and seed: the audit's overall interval is the one the gate decided on."""
    current = {"served": [r.parent_rank for r in ROWS], "policy": [r.parent_rank for r in ROWS]}
    candidate = {"served": [r.child_rank for r in ROWS], "policy": [r.child_rank for r in ROWS]}
    gated = gate.compare(current, candidate, CONFIG.resamples, CONFIG.seed)["served"]
    for metric in ("HR@10", "NDCG@10", "Pass@1"):
        mine = figures["overall"]["metrics"][metric]
        assert (mine["low"], mine["high"]) == (gated[metric]["low"], gated[metric]["high"])
        assert mine["low"] < mine["high"]


def test_exposure_before_and_after(figures):
    o = figures["overall"]["exposure"]
    # Before: item 1 five times of 16, nine items of 100; after: item 1 eight times, five items.
    assert o["before"] == {"impressions": 16, "top1_share": 5 / 16, "coverage": 9 / 100, "gini": pytest.approx(0.94)}
    assert o["after"] == {"impressions": 16, "top1_share": 8 / 16, "coverage": 5 / 100,
                          "gini": pytest.approx(2 * (96 + 2 * 97 + 2 * 98 + 3 * 99 + 8 * 100) / 1600 - 1.01)}
    web = entry(figures, "request:web")["exposure"]  # rows 1, 2 and 8
    assert (web["before"]["top1_share"], web["before"]["coverage"]) == (3 / 6, 4 / 100)
    assert (web["after"]["top1_share"], web["after"]["coverage"]) == (3 / 6, 3 / 100)


def test_disparity_flags_the_segments_past_the_threshold(figures):
    assert figures["flagged"] == ["request:web", "history:new", "category:unknown"]
    web = entry(figures, "request:web")["disparity"]
    assert (web["repaired_gap"], web["hr10_gap"], web["value"], web["flagged"]) == (5 / 8, 2 / 3, 2 / 3, True)
    assert web["reason"] == "repaired share +0.625 against the run; ΔHR@10 +0.667 against the run"
    new = entry(figures, "history:new")["disparity"]
    assert (new["repaired_gap"], new["hr10_gap"], new["flagged"]) == (5 / 8, 0.5, True)
    assert new["reason"] == "repaired share +0.625 against the run"  # ΔHR@10 +0.5 is not *more* than 0.5
    category = entry(figures, "category:unknown")["disparity"]  # flagged on the metric alone
    assert (category["repaired_gap"], category["hr10_gap"], category["flagged"]) == (-3 / 8, -2 / 3, True)
    app = entry(figures, "request:app")["disparity"]
    assert (app["repaired_gap"], app["hr10_gap"], app["flagged"], app["reason"]) == (1 / 5 - 3 / 8, -0.5, False, "")


def test_a_gap_on_too_few_groups_or_slice_rows_is_reported_but_never_flagged():
    config = AuditConfig(threshold=0.5, min_groups=3, min_rows=4, resamples=100)
    figures = audit_figures(GROUPS, REPAIRS, ROWS, 100, config)
    assert figures["flagged"] == []
    web = entry(figures, "request:web")["disparity"]
    assert (web["flagged"], web["value"]) == (False, 2 / 3)
    assert web["reason"] == ("repaired share +0.625 against the run (not flagged: 2 groups, fewer than 3); "
                             "ΔHR@10 +0.667 against the run (not flagged: 3 slice rows, fewer than 4)")
    category = entry(figures, "category:unknown")["disparity"]  # 4 groups, but its ΔHR@10 rests on 3 rows
    assert category["reason"] == "ΔHR@10 -0.667 against the run (not flagged: 3 slice rows, fewer than 4)"


def test_without_slice_rows_the_group_figures_stand_alone_and_repairs_must_be_of_the_runs_groups():
    figures = audit_figures(GROUPS, REPAIRS, [], 100, CONFIG)
    assert figures["overall"]["metrics"] == {} and figures["overall"]["exposure"]["before"]["impressions"] == 0
    assert figures["flagged"] == ["request:web", "history:new"]
    with pytest.raises(ValueError, match="did not train on"):
        audit_figures(GROUPS, [RepairFacts("elsewhere", "organic_click")], ROWS, 100, CONFIG)
