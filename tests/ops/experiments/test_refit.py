"""``ops.experiments.refit``: a ranker tuned on logged rows learns from them and reads candidates as its parent does,
and each half of a fold is ranked by a ranker tuned on the other half."""

from __future__ import annotations

import pytest
import torch

from ops.experiments.crossfit import run_dir
from ops.experiments.policy import Paths
from ops.experiments.refit import RankerTuning, halves, main, refit, tune_ranker
from recast.ranker import FEATURES, RankerConfig, fit_ranker

F = len(FEATURES)


def _rows(n: int, seed: int, constant: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of six candidates whose target is the one with the largest feature 0; feature ``constant`` never varies."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 6, F, generator=g)
    x[..., constant] = 1.0
    return x, torch.ones(n, 6, dtype=torch.bool), x[..., 0].argmax(dim=1)


def _accuracy(ranker, x, targets) -> float:
    return (ranker.scores(x).argmax(dim=1) == targets).float().mean().item()


def test_tuning_learns_from_the_rows_and_keeps_how_the_parent_reads_candidates():
    x, mask, targets = _rows(200, 0)
    noise = torch.randint(0, 6, (200,), generator=torch.Generator().manual_seed(1))
    parent = fit_ranker(x, mask, noise, RankerConfig(hidden=8, epochs=2))  # a parent taught noise
    assert bool((parent.w1[:, 3] == 0).all())  # fit_ranker gives a feature that never varies no weight
    test_x, _, test_targets = _rows(200, 2)
    free = tune_ranker(parent, x, mask, targets, RankerTuning(epochs=30, lr=0.05, proximal=0.0))
    assert _accuracy(free, test_x, test_targets) > _accuracy(parent, test_x, test_targets) + 0.3
    assert free.mean is parent.mean and free.std is parent.std and bool((free.w1[:, 3] == 0).all())
    pulled = tune_ranker(parent, x, mask, targets, RankerTuning(epochs=30, lr=0.05, proximal=10.0))
    distance = lambda r: (r.w1 - parent.w1).norm() + (r.w2 - parent.w2).norm()  # noqa: E731
    assert distance(pulled) < distance(free)
    assert tune_ranker(parent, x[:0], mask[:0], targets[:0], RankerTuning()) is parent
    with pytest.raises(ValueError, match="proximal"):
        RankerTuning(proximal=-1.0)


def _dumps(paths: Paths, label: str, folds: int, rows: int = 60) -> None:
    """Dumps whose saved ranker was taught noise and whose target is the candidate with the largest feature 0."""
    g = torch.Generator().manual_seed(0)
    x, mask, _ = _rows(40, 5)
    saved = fit_ranker(x, mask, torch.randint(0, 6, (40,), generator=g), RankerConfig(hidden=8, epochs=2,
                                                                                     policy_weight=0.0))  # fmt: skip
    for fold in range(folds):
        features, _, column = _rows(rows, 10 + fold)
        items = torch.stack([torch.randperm(30, generator=g)[:6] for _ in range(rows)])
        out = run_dir(paths, label, fold, 0, "tuning")
        out.mkdir(parents=True)
        torch.save({
            "beam_items": torch.full((rows, 1), -1), "beam_scores": torch.full((rows, 1), float("-inf")),
            "cand_items": items, "features": features, "targets": items[torch.arange(rows), column],
            "ranker": saved.to_tensors(), "temperature": 2.0, "users": [f"u{fold}-{row // 2}" for row in range(rows)],
        }, out / "served.pt")  # fmt: skip


def test_refit_ranks_each_half_by_a_ranker_tuned_on_the_other(tmp_path, shipped_data, capsys):
    assert halves(["a", "b", "a"], 0)[0] == halves(["a", "b", "a"], 0)[2]  # a user's rows stay together
    paths = Paths(shipped_data, tmp_path)
    _dumps(paths, "r", folds=2)
    result = {e["variant"]: e for e in refit(paths, "r", [0], night=20, folds=2)}
    served = result.pop("served")
    assert "against_served" not in served and served["HR@1"] < 0.5
    for name, entry in result.items():  # every ranker that learnt from the other half finds the target more often
        assert entry["HR@1"] > served["HR@1"], name
    assert result["tuned e10 lr0.01 prox0"]["against_served"]["HR@1"][1] > 0  # beyond the noise, users resampled
    assert result["fitted on the half's rows alone"]["HR@1"] > 0.5
    assert "tuned e10 lr0.003 prox1, a night (20 rows)" in result
    main(["--data", str(shipped_data), "--out", str(tmp_path), "--label", "r", "--seeds", "0", "--folds", "2",
          "--night", "20"])  # fmt: skip
    assert "| fitted on the half's rows alone |" in capsys.readouterr().out
    assert (tmp_path / "crossfit-tuning" / "r" / "refit.json").is_file()
