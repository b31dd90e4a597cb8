"""The policy experiments' plumbing on the shipped data with the tiny preset: splits, a run reused or re-scored
without retraining, the served-mix grid and the anchored decodings' grid."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ops.experiments.policy import Paths, anchor_grid, main, mix_grid, prepare, train_and_score
from recast.metrics import summarize
from recast.sft import preset


def test_a_run_is_reused_then_rescored_without_retraining_and_the_mix_grid_is_ranked(tmp_path, shipped_data):
    paths = Paths(shipped_data, tmp_path)
    counts = prepare(paths)
    assert counts["train"] + counts["heldout"] == 4532 and counts["fit"] + counts["tune"] == counts["train"]
    config, out = replace(preset("tiny"), epochs=1), tmp_path / "run"
    first = train_and_score(paths, paths.inner / "fit.csv", paths.inner / "tune.csv", config, out, beam_width=10)
    assert len(first["ranks"]["policy"]) == counts["tune"] and {"transition", "text", "served"} <= set(first["ranks"])
    weights = (out / "ckpt" / "model.safetensors").stat().st_mtime_ns
    (out / "result.json").unlink()  # a re-score: the checkpoint and its training figures are kept
    again = train_and_score(paths, paths.inner / "fit.csv", paths.inner / "tune.csv", config, out, beam_width=10)
    assert (out / "ckpt" / "model.safetensors").stat().st_mtime_ns == weights
    assert again["ranks"] == first["ranks"] and again["train_seconds"] == first["train_seconds"]
    grid = mix_grid(paths, out, beam_width=10)
    assert len(grid) == 42 and all(w + wt <= 1.0 for w, wt, *_ in grid)
    assert [hr + nd for *_, hr, nd in grid] == sorted((hr + nd for *_, hr, nd in grid), reverse=True)
    anchored = anchor_grid(paths, [out], beam_width=10, anchors=[1, 3], decays=[0.5, 0.7])
    assert sorted((e["anchors"], e["decay"]) for e in anchored) == [(1, 0.5), (3, 0.5), (3, 0.7)]
    assert [e["policy HR@10"] + e["policy NDCG@10"] for e in anchored] == sorted(
        (e["policy HR@10"] + e["policy NDCG@10"] for e in anchored), reverse=True)  # fmt: skip
    # One anchor is the run's own decoding: the same policy figures, so a zero difference.
    one = next(e for e in anchored if e["anchors"] == 1)
    assert one["policy HR@10"] == summarize(first["ranks"]["policy"])["HR@10"]
    assert one["policy dHR@10 vs own"] == (0.0, 0.0, 0.0)


def test_tune_on_a_fresh_output_folder_writes_the_splits_first(tmp_path, shipped_data):
    # A clean checkout has no runs/: tune, confirm and mixes write the seeded splits rather than fail on them.
    with pytest.raises(SystemExit, match="unknown variant"):
        main(["--data", str(shipped_data), "--out", str(tmp_path), "tune", "no-such-variant"])
    assert (tmp_path / "inner" / "tune.csv").is_file() and (tmp_path / "split" / "heldout.csv").is_file()
