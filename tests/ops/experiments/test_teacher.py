"""``ops.experiments.teacher`` on the shipped data: a tiny one-item policy against its own objective, and its
learned ranker read as anchored decoding reads the policy."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from learner.sft_trainer import train_sft
from ops.experiments.policy import Paths, prepare
from ops.experiments.teacher import anchored_objective, anchored_ranker_scores, objective, ranker_cuts
from recast.checkpoint import load_checkpoint
from recast.distill import ranker_teacher_scores
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


def test_the_ranker_read_per_anchor_is_mixed_at_the_anchors_weights(tmp_path, shipped_data):
    paths = Paths(shipped_data, tmp_path)
    prepare(paths)
    config = replace(preset("tiny"), epochs=1, short_context=1, max_history=1, long_windows=False, ranker=True)
    train_sft(shipped_data, paths.inner / "fit.csv", config, tmp_path / "run" / "ckpt", progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt")
    histories = [[3, 5, 8], [13]]

    def ranker(hs):
        return ranker_teacher_scores(ckpt.transition, ckpt.text, ckpt.ranker, hs)

    mixed = anchored_ranker_scores(ckpt, histories, cut=1, anchors=2, decay=0.5)
    assert torch.allclose(mixed[0], 2 / 3 * ranker([[8]])[0] + 1 / 3 * ranker([[5]])[0])  # the last item, then one back
    assert torch.allclose(mixed[1], ranker([[13]])[0])  # one item: one anchor
    assert torch.allclose(anchored_ranker_scores(ckpt, histories, cut=2), ranker([[5, 8], [13]]))
    # Each reading cut to its best two, renormalised, before the mix.
    kept = anchored_ranker_scores(ckpt, histories, cut=1, anchors=2, decay=0.5, top=2)
    for reading in (ranker([[8]])[0], ranker([[5]])[0]):
        best = reading.topk(2).indices
        assert kept[0, best].min() > 0
    assert (kept[0] > 0).sum() <= 4 and torch.allclose(kept.sum(dim=1), torch.ones(2))
    top_of_13 = ranker([[13]])[0].topk(2)
    assert torch.allclose(kept[1, top_of_13.indices], top_of_13.values / top_of_13.values.sum())
    plain, anchored = ranker_cuts(shipped_data, tmp_path, tmp_path / "run"), ranker_cuts(
        shipped_data, tmp_path, tmp_path / "run", anchors=3)  # fmt: skip
    assert [row[0] for row in anchored] == [row[0] for row in plain] == [1, 2, 3, 5, 10]
    assert all(0 <= hr1 <= hr10 <= 1 for _, hr1, hr10, _ in anchored) and plain[0][2] > 0.05
    assert anchored != plain


def test_the_anchored_objective_is_read_as_the_policy_is_served(tmp_path, shipped_data):
    from recast.anchors import anchor_histories
    from recast.baselines import top_items
    from recast.dataset import load_catalog, load_interactions
    from recast.metrics import rank_of, summarize
    from recast.recommender import Recommender

    paths = Paths(shipped_data, tmp_path)
    prepare(paths)
    config = replace(preset("tiny"), epochs=1, short_context=1, max_history=1, long_windows=False,
                     distill_weight=1.0, teacher_paths=True, anchors=3)  # fmt: skip
    train_sft(shipped_data, paths.inner / "fit.csv", config, tmp_path / "run" / "ckpt", progress=False)
    table = {name: (hr1, hr10, ndcg) for name, hr1, hr10, ndcg in
             anchored_objective(shipped_data, tmp_path, tmp_path / "run", anchors=3)}  # fmt: skip
    # The policy's row ranks as the checkpoint serves it on three anchors.
    catalog = load_catalog(shipped_data)
    rows = load_interactions(paths.inner / "tune.csv", catalog)
    beams = Recommender.from_checkpoint(load_checkpoint(tmp_path / "run" / "ckpt"), 50).policy(
        [[catalog.index[i] for i in r.history] for r in rows])  # fmt: skip
    served = summarize([rank_of(catalog.index[r.target], [i for i, _ in beams.top(b, 50)]) for b, r in enumerate(rows)])
    assert table["the policy"][1] == pytest.approx(served["HR@10"], abs=1 / len(rows))  # equal scores may order apart
    # Every window is wholly on the teacher: its true items carry nothing (a ranking of no scores at all), and the
    # objective is taught, far above that.
    nothing = summarize([rank_of(catalog.index[r.target], top_items(torch.zeros(len(catalog)), 50)) for r in rows])
    assert table["the windows' true items alone"] == (nothing["HR@1"], nothing["HR@10"], nothing["NDCG@10"])
    assert table["its objective"][1] > 0.05 > nothing["HR@10"]
    # The four groups of anchor items split the prompts between them.
    groups = [name for name in table if name.startswith("the policy, the objective where")]
    prompts, _ = anchor_histories([[catalog.index[i] for i in r.history] for r in rows], 3, 0.5)
    assert len(groups) == 4 and sum(int(name.split("(")[1].split()[0]) for name in groups) == len(prompts)


def test_the_anchored_objective_refuses_a_longer_prompt(tmp_path, shipped_data, tiny_checkpoint):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ckpt").symlink_to(tiny_checkpoint)
    with pytest.raises(SystemExit, match="not a one-item policy"):
        anchored_objective(shipped_data, tmp_path, tmp_path / "run")
