"""``ops.experiments.nightly_counts``: day 1's rows are counted as the nightly refresh counts them, and day 2's are
ranked by the same served ranking before and after."""

from __future__ import annotations

import json

from ops.experiments.nightly_counts import main


def test_a_night_counts_day_one_and_ranks_day_two_before_and_after(tmp_path, shipped_data, capsys):
    args = ["--data", str(shipped_data), "--out", str(tmp_path), "--preset", "tiny", "--epochs", "1", "--seeds", "0"]
    main(args)
    run = json.loads((tmp_path / "seed-0" / "ranks.json").read_text())
    assert run["counted_windows"] > 0 and 0 < run["new_items_bought_on_day1"] <= run["new_items"]
    assert len(run["cold_before"]) == len(run["cold_after"]) == len(run["cold_bought"]) > 0
    assert any(run["cold_bought"]) and not all(run["cold_bought"])  # some day-2 targets were bought on day 1
    # The night's counts reach the served ranking: some day-2 row ranks its target elsewhere after them.
    before, after = run["cold_before"] + run["warm_before"], run["cold_after"] + run["warm_after"]
    assert before != after
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["pooled"]["cold"]["before"]["rows"] == len(run["cold_before"])
    assert result["pooled"]["cold, its item bought on day 1"]["before"]["rows"] == sum(run["cold_bought"])
    assert "| pooled | warm |" in capsys.readouterr().out
    main([*args, "--pool-only"])  # rereads the saved ranks: the same result
    assert json.loads((tmp_path / "result.json").read_text()) == result
