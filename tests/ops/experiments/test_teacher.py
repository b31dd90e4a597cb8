"""``ops.experiments.teacher objective`` on the shipped data: a tiny one-item policy against its own objective."""

from __future__ import annotations

from dataclasses import replace

import pytest

from learner.sft_trainer import train_sft
from ops.experiments.policy import Paths, prepare
from ops.experiments.teacher import objective
from recast.sft import preset


def test_an_objective_that_is_its_teacher_ranks_as_the_teacher(tmp_path, shipped_data):
    # Windows wholly on the teacher (distill_weight 1) plus made-up pairs over the same top k: each item's row of the
    # table is (windows ending in it + 0.5) times the teacher's distribution, so the two rankings are one.
    paths = Paths(shipped_data, tmp_path)
    prepare(paths)
    config = replace(preset("tiny"), epochs=1, short_context=1, max_history=1, long_windows=False,
                     distill_weight=1.0, item_teacher_weight=0.5, item_teacher_k=20, teacher_top_k=20)  # fmt: skip
    train_sft(shipped_data, paths.inner / "fit.csv", config, tmp_path / "run" / "ckpt", progress=False)
    result = objective(shipped_data, tmp_path, tmp_path / "run")
    assert set(result) == {"objective", "teacher", "policy"}
    assert result["objective"]["objective_top10_kept"] == 10.0
    for metric in ("HR@1", "HR@10", "NDCG@10"):
        assert result["teacher"][metric] == pytest.approx(result["objective"][metric])
    assert result["teacher"]["HR@10"] > 0.05 and 0 <= result["policy"]["objective_top10_kept"] < 10


def test_a_longer_prompt_is_refused(tmp_path, shipped_data, tiny_checkpoint):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ckpt").symlink_to(tiny_checkpoint)  # the tiny preset: prompts of up to 10 items
    with pytest.raises(SystemExit, match="not a one-item policy"):
        objective(shipped_data, tmp_path, tmp_path / "run")
