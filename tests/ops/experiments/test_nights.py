"""``ops.experiments.nights``: each night learns from the day's rows as the nightly refresh learns from logged
lists, and every later day is ranked by every arm's model."""

from __future__ import annotations

import json

from ops.experiments.nights import main


def test_nights_count_and_teach_each_day_and_rank_the_next(tmp_path, shipped_data, capsys):
    args = ["--data", str(shipped_data), "--out", str(tmp_path), "--preset", "tiny", "--epochs", "1", "--seeds", "0",
            "--days", "3", "--policy-weights", "0.6", "--arms", "counts,learned,recast"]  # fmt: skip
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
    assert set(cold["served"]) == {f"{a}{w}" for a in ("off", "counts", "learned", "recast") for w in ("", "@0.6")}
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
    assert "| pooled | warm | learned@0.6 |" in capsys.readouterr().out
    main([*args, "--pool-only"])  # rereads the saved ranks: the same result
    assert json.loads((tmp_path / "result-3d.json").read_text()) == result


def test_pooled_intervals_resample_whole_seeds():
    """Two seeds whose nights teach opposite things: pooled, the change averages 0 and its interval spans both
    seeds' changes; resampling rows instead would call it 0 with certainty."""
    from ops.experiments.nights import report

    def run(off: list, counts: list) -> dict:
        part = {"day": [1] * len(off), "bought": [False] * len(off), "served": {"off": off, "counts": counts},
                "policy": {"off": off}}  # fmt: skip
        return {"rows": {"cold": part, "warm": part}, "nights": []}

    hit, miss = [0] * 20, [None] * 20
    pooled = report({0: run(miss, hit), 1: run(hit, miss)})["pooled"]["cold"]["served"]["counts"]["minus_off"]
    change = pooled["HR@10"]
    assert change["diff"] == 0.0 and change["ci95"] == [-1.0, 1.0]
    one_seed = report({0: run(miss, hit)})["seeds"][0]["cold"]["served"]["counts"]["minus_off"]["HR@10"]
    assert one_seed["diff"] == 1.0 and one_seed["ci95"] == [1.0, 1.0]
