"""The four-arm loop benchmark's arithmetic: seeds averaged per visit before the paired bootstrap over visits."""

from ops.experiments.loop import compare, markdown

METRICS = ("served HR@10", "policy HR@10", "policy Pass@1")


def run(hits_day2: int) -> dict:
    days = [{"day": 1, "visits": 2, "hits": 1, "refresh": {"decision": "published"}},
            {"day": 2, "visits": 2, "hits": hits_day2, "refresh": {"status": "skipped"}}]  # fmt: skip
    return {"seed": 0, "result": {"days": days}, "policy_by_day": [(0.5, 0.0), (0.5, 0.5)]}


def visits(*values: list) -> dict:
    return dict(zip(METRICS, values, strict=True))


def test_each_arm_is_compared_with_off_on_seed_averaged_visits():
    off = visits([0.0, 0.0], [0.0, 1.0], [0.0, 0.0])
    arms = {"off": {"runs": [run(0), run(0)], "per_visit": [off, off]},
            "recast": {"runs": [run(2), run(1)],
                       "per_visit": [visits([1.0, 1.0], [1.0, 1.0], [0.0, 1.0]),
                                     visits([1.0, 0.0], [1.0, None], [0.0, 1.0])]}}  # fmt: skip
    deltas = compare(arms, resamples=200)["recast"]
    assert deltas["served HR@10"]["delta"] == 0.75 and deltas["served HR@10"]["rows"] == 2  # (1 + 0.5) / 2
    assert deltas["policy HR@10"]["rows"] == 1  # a visit a seed could not score is left out of the pairs
    assert deltas["policy Pass@1"]["delta"] == 0.5 and deltas["policy Pass@1"]["low"] <= 0.5
    table = markdown(arms, compare(arms, resamples=200))
    assert "| recast | 2 | 2 | 0.7500 | 0.5000 | 0.5000 | skipped x2 |" in table
    assert "| recast | +0.7500 [" in table and "decisions (2 seeds)" in table
