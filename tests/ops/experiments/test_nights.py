"""``ops.experiments.nights``: each night learns from the day's rows as the nightly refresh learns from logged
lists, and every later day is ranked by every arm's model."""

from __future__ import annotations

import json

from ops.experiments.nights import main


def test_nights_count_and_teach_each_day_and_rank_the_next(tmp_path, shipped_data, capsys):
    args = ["--data", str(shipped_data), "--out", str(tmp_path), "--preset", "tiny", "--epochs", "1", "--seeds", "0",
            "--days", "3", "--policy-weights", "0.6", "--gates", "0.4,1",
            "--arms", "counts,learned,recast"]  # fmt: skip
    main(args)
    run = json.loads((tmp_path / "seed-0" / "ranks-3d.json").read_text())
    assert [n["day"] for n in run["nights"]] == [0, 1]  # no night after the last day
    for n in run["nights"]:
        assert n["counts"]["counted_windows"] > 0 and "sft_steps" not in n["counts"]
        assert n["learned"]["sft_steps"] > 0 and n["learned"]["sft_replay"] == n["learned"]["sft_new"] > 0
        # ReCast's step learns from the day's lists as served: most miss the item bought, so groups are repaired.
        assert n["recast"]["rl"]["steps"] > 0 and n["recast"]["rl"]["contexts"] == n["rows"]
        assert n["recast"]["rl"]["repaired"] > 0 and "rl" not in n["learned"]
    assert (tmp_path / "seed-0" / "rl-3d" / "recast" / "night-1" / "repairs.jsonl").stat().st_size > 0
    assert 0 < run["nights"][0]["new_items_bought_so_far"] <= run["nights"][1]["new_items_bought_so_far"]
    cold = run["rows"]["cold"]
    assert set(cold["day"]) == {1, 2} and len(cold["bought"]) == len(cold["day"]) > 0
    assert any(cold["bought"]) and not all(cold["bought"])  # some targets were bought on an earlier day
    shares = ("", "@0.6", "~0.4", "~1")
    assert set(cold["served"]) == {f"{a}{w}" for a in ("off", "counts", "learned", "recast") for w in shares}
    # The gate at the mix's own share (this policy has no ranker) is the served list; at 1 the policy alone orders
    # what the counts miss.
    assert all(run["rows"][k]["served"][a] == run["rows"][k]["served"][f"{a}~0.4"]
               for k in ("cold", "warm", "mixed") for a in ("off", "learned"))  # fmt: skip
    every = lambda arm: [r for k in ("cold", "warm", "mixed") for r in run["rows"][k]["served"][arm]]  # noqa: E731
    assert every("learned") != every("learned~1")
    assert len(cold["reached"]) == len(cold["day"]) and len(run["rows"]["mixed"]["served"]["off"]) > 0
    assert set(cold["policy"]) == {"off", "learned", "recast"}
    assert cold["policy"]["learned"] != cold["policy"]["recast"]  # the RL step moves the policy
    assert cold["served"]["learned"] != cold["served"]["learned@0.6"]  # a heavier share of the policy: other lists
    rows = run["rows"]["cold"]["served"]["off"] + run["rows"]["warm"]["served"]["off"]
    # Each night reaches what is served: the counts move some row's rank, and the policy's SFT moves its beam.
    assert rows != run["rows"]["cold"]["served"]["counts"] + run["rows"]["warm"]["served"]["counts"]
    assert cold["policy"]["off"] != cold["policy"]["learned"]
    result = json.loads((tmp_path / "result-3d.json").read_text())
    pooled = result["pooled"]["cold"]
    assert pooled["served"]["off"]["summary"]["rows"] == len(cold["day"])
    assert set(pooled["served"]["off"]) == {"summary", "minus_counts", "minus_learned"}
    assert set(pooled["served"]["learned@0.6"]) == {"summary", "minus_off", "minus_counts", "minus_learned"}
    assert set(pooled["policy"]["learned"]) == {"summary", "minus_off"}  # no counts arm's policy: it is off's
    assert set(pooled["policy"]["recast"]) == {"summary", "minus_off", "minus_learned"}
    assert set(pooled["served"]["learned"]["minus_off"]) == {"HR@10", "NDCG@10"}
    earlier = result["pooled"]["cold, its item bought on an earlier day"]
    assert earlier["served"]["off"]["summary"]["rows"] == sum(cold["bought"])
    reach = [result["pooled"][k]["served"]["off"]["summary"]["rows"] for k in
             ("  of which the counts reach it from the history", "  of which they do not")]  # fmt: skip
    assert sum(reach) == sum(cold["bought"])
    assert result["pooled"]["every row"]["served"]["off"]["summary"]["rows"] == len(every("off"))
    assert "| pooled | warm | learned@0.6 |" in capsys.readouterr().out
    main([*args, "--pool-only"])  # rereads the saved ranks: the same result
    assert json.loads((tmp_path / "result-3d.json").read_text()) == result


def test_pooled_intervals_resample_whole_seeds():
    """Two seeds whose nights teach opposite things: pooled, the change averages 0 and its interval spans both
    seeds' changes; resampling rows instead would call it 0 with certainty."""
    from ops.experiments.nights import report

    def run(off: list, counts: list) -> dict:
        part = {"day": [1] * len(off), "bought": [False] * len(off), "reached": [False] * len(off),
                "served": {"off": off, "counts": counts}, "policy": {"off": off}}  # fmt: skip
        return {"rows": {"cold": part, "warm": part}, "nights": []}

    hit, miss = [0] * 20, [None] * 20
    pooled = report({0: run(miss, hit), 1: run(hit, miss)})["pooled"]["cold"]["served"]["counts"]["minus_off"]
    change = pooled["HR@10"]
    assert change["diff"] == 0.0 and change["ci95"] == [-1.0, 1.0]
    one_seed = report({0: run(miss, hit)})["seeds"][0]["cold"]["served"]["counts"]["minus_off"]["HR@10"]
    assert one_seed["diff"] == 1.0 and one_seed["ci95"] == [1.0, 1.0]


def test_reach_flags_follow_the_pairs_counted_on_earlier_days():
    """The counts reach a cold row's target only through a pair counted on an earlier day, from one of the row's
    last scorer items; the pairs are those of a prompt of ``max_history`` items."""
    from ops.experiments.nights import reach_flags
    from recast.dataset import Interaction as Row

    day0 = [Row("u", ("a", "b"), "N"), Row("v", ("N",), "M")]  # counts b->N (and N->M)
    day1 = [Row("w", ("x", "b"), "N"), Row("y", ("a",), "N"), Row("z", ("b", "c"), "old")]
    day2 = [Row("q", ("N", "x"), "M"), Row("r", ("b",), "P")]
    held = {"N", "M", "P"}
    # Day 1: b->N counted on day 0 reaches w's N; y's history (a) never led to N. z is not cold. Day 2: N->M is
    # within q's last ten items; nobody bought P before.
    assert reach_flags([day0, day1, day2], held, max_history=1) == [True, False, True, False]
    assert reach_flags([day0, day1, day2], held, max_history=1, scorer_history=1) == [True, False, False, False]
    # A two-item prompt also counts a->b: still nothing leads from a to N.
    assert reach_flags([day0, day1], held, max_history=2) == [True, False]


def test_compare_pools_another_settings_arms_on_the_same_rows_only():
    import pytest

    from ops.experiments.nights import merge

    def run(day: list, ranks: list) -> dict:
        part = {"day": day, "served": {"off": ranks, "counts": ranks}, "policy": {"off": ranks}}
        return {"rows": {"cold": part, "warm": part}}

    this, other = run([1, 2], [0, None]), run([1, 2], [None, 3])
    merge(this, other, "4d")
    assert this["rows"]["cold"]["served"]["counts [4d]"] == [None, 3] and "off [4d]" in this["rows"]["warm"]["policy"]
    with pytest.raises(SystemExit, match="4d: its cold rows are not this run's"):
        merge(run([1, 2], [0, 0]), run([1], [0]), "4d")
