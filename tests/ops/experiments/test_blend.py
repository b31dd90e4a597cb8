"""``ops.experiments.blend``: a dump re-blends exactly what a checkpoint serves, and ``sweep`` and ``stack`` read
the policy where it carries the target."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ops.experiments.blend import (
    _candidate_set,
    dump,
    frontier,
    interleave,
    load_dumps,
    main,
    passthrough,
    served_ranks,
    stack,
    sweep,
)
from ops.experiments.crossfit import fold_files, prepare_folds, run_dir
from ops.experiments.policy import Paths
from recast.ranker import FEATURES, Ranker, RankerConfig, fit_ranker


@pytest.fixture(scope="module")
def ranked_checkpoint(tmp_path_factory, shipped_data):
    """A tiny policy served with a learned ranker, decoded on two anchors: the served ranking's every stage."""
    from learner.sft_trainer import train_sft
    from recast.sft import preset

    out = tmp_path_factory.mktemp("blend") / "ckpt"
    train_sft(shipped_data, shipped_data / "valid.csv", replace(preset("tiny"), epochs=1, ranker=True, anchors=2),
              out, progress=False)  # fmt: skip
    return out


def test_a_dump_re_blends_exactly_what_the_checkpoint_serves(tmp_path, shipped_data, ranked_checkpoint):
    from recast.checkpoint import load_checkpoint
    from recast.dataset import load_catalog, load_interactions
    from recast.metrics import rank_of
    from recast.recommender import Recommender

    paths = Paths(shipped_data, tmp_path)
    prepare_folds(paths, folds=3, scope="tuning")  # two are dumped
    for fold in range(2):
        run = run_dir(paths, "r", fold, 0, "tuning")
        run.mkdir(parents=True)
        (run / "ckpt").symlink_to(ranked_checkpoint)
        (run / "result.json").write_text("{}")
    with pytest.raises(SystemExit, match="not dumped"):
        load_dumps(paths, "r", [0], folds=2)
    dump(paths, "r", [0], beam_width=5, folds=2)
    d = load_dumps(paths, "r", [0], folds=2)[0, 0]
    catalog = load_catalog(shipped_data)
    rows = load_interactions(fold_files(paths, 0, "tuning")[1], catalog)
    assert d["users"] == [r.user_id for r in rows]
    rec = Recommender.from_checkpoint(load_checkpoint(ranked_checkpoint), 5)
    histories = [[catalog.index[i] for i in r.history] for r in rows[:128]]
    served = [rank_of(catalog.index[r.target], [i for i, _ in row])
              for r, row in zip(rows, rec.recommend(histories, 50))]  # fmt: skip
    ranker = Ranker.from_tensors(d["ranker"])
    weight = float(d["ranker"]["policy_weight"])
    assert served_ranks(d, ranker, d["cand_items"], d["features"], weight, d["temperature"])[:128] == served
    # The union holds the ranker's candidates and the beam; the beam set holds the beam alone.
    for row in range(len(rows)):
        union = set(d["union_items"][row].tolist()) - {-1}
        beam = set(d["beam_items"][row].tolist()) - {-1}
        assert union == (set(d["cand_items"][row].tolist()) - {-1}) | beam
    items, _, extra = _candidate_set(d, "beam", d["temperature"])
    assert all(set(items[row].tolist()) - {-1} == set(d["beam_items"][row].tolist()) - {-1} for row in range(50))
    assert torch.equal(extra[..., 0].bool(), items >= 0)
    # The ranker read per anchor: a mixture of each reading's distribution over its candidates.
    assert torch.allclose(d["anchored_probs"].sum(dim=1), torch.ones(len(rows)), atol=1e-5)
    assert bool(((d["anchored_items"] >= 0) == (d["anchored_probs"] > 0)).all())


def _synthetic_dumps(paths: Paths, label: str, folds: int, rows: int = 40, target_at: int = 0) -> None:
    """Dumps whose target is always the policy's beam item ``target_at`` (its first: the policy knows it), one of
    the scorers' six candidates at a random place, and whose scorer features are noise."""
    g = torch.Generator().manual_seed(0)
    config = RankerConfig(hidden=4, epochs=1, policy_weight=0.0)
    noise = fit_ranker(torch.rand(20, 6, len(FEATURES), generator=g), torch.ones(20, 6, dtype=torch.bool),
                       torch.zeros(20, dtype=torch.long), config)  # fmt: skip
    for fold in range(folds):
        beam = torch.stack([30 + torch.randperm(30, generator=g)[:4] for _ in range(rows)])
        cands = torch.stack([torch.randperm(30, generator=g)[:6] for _ in range(rows)])
        cands[torch.arange(rows), torch.randint(0, 6, (rows,), generator=g)] = beam[:, target_at]
        features = torch.rand(rows, 6, len(FEATURES), generator=g)
        out = run_dir(paths, label, fold, 0, "tuning")
        out.mkdir(parents=True)
        torch.save({
            "beam_items": beam, "beam_scores": torch.tensor([[-0.1, -1.0, -2.0, -3.0]]).expand(rows, 4),
            "cand_items": cands, "features": features,
            "union_items": torch.cat([cands, beam[:, torch.arange(4) != target_at]], dim=1),
            "union_features": torch.cat([features, torch.rand(rows, 3, len(FEATURES), generator=g)], dim=1),
            "anchored_items": cands, "anchored_probs": torch.full((rows, 6), 1 / 6),
            "targets": beam[:, target_at], "ranker": noise.to_tensors(), "temperature": 2.0,
            "users": [f"u{fold}-{row // 2}" for row in range(rows)],
        }, out / "served.pt")  # fmt: skip


def test_sweep_and_stack_find_what_only_the_policy_knows(tmp_path, shipped_data, capsys):
    paths = Paths(shipped_data, tmp_path)
    _synthetic_dumps(paths, "s", folds=3)
    swept = {(e["policy_weight"], e["temperature"]): e for e in sweep(paths, "s", [0], [0.0, 1.0], [2.0], folds=3)}
    assert swept[0.0, 2.0]["against_served"]["HR@10"] == (0.0, 0.0, 0.0)  # the served blend against itself
    assert swept[0.0, 2.0]["HR@1"] < 0.5 and swept[1.0, 2.0]["HR@1"] == 1.0  # the beam alone ranks it first
    result = {e["variant"]: e for e in stack(paths, "s", [0], [0.0], folds=3)}
    assert result["scorers, saved ranker, w=0"]["against_served"]["HR@1"] == (0.0, 0.0, 0.0)
    with_policy = result["union, retrained with the policy's features, w=0"]
    assert with_policy["HR@1"] > 0.9 and result["union, retrained, w=0"]["HR@1"] < 0.5
    assert result["scorers, retrained with the policy's features, w=0"]["HR@1"] > 0.9
    assert with_policy["against_without_policy"]["HR@1"][1] > 0  # beyond the noise, users resampled
    assert result["beam, retrained with the policy's features, w=0"]["HR@1"] > 0.9
    assert "against_without_policy" not in result["beam, retrained, w=0"]
    anchored = result["scorers, the saved ranker read per anchor, w=0"]
    assert anchored["HR@1"] < 0.5 and "against_one_reading" in anchored  # uniform over six
    # One fold's rows alone: the saved ranker's HR@1 on fold 1's dump, and fewer users resampled.
    d = load_dumps(paths, "s", [0], folds=3)[1, 0]
    ranks = served_ranks(d, Ranker.from_tensors(d["ranker"]), d["cand_items"], d["features"], 0.0, 2.0)
    fold1 = {e["variant"]: e for e in stack(paths, "s", [0], [0.0], folds=3, only=1)}
    assert fold1["scorers, saved ranker, w=0"]["HR@1"] == pytest.approx(sum(r == 0 for r in ranks) / len(ranks))
    main(["--data", str(shipped_data), "--out", str(tmp_path), "--label", "s", "--seeds", "0", "--folds", "3",
          "sweep", "--weights", "0,1", "--temperatures", "2"])  # fmt: skip
    out = capsys.readouterr().out
    assert "| w=1, T=2 | 1.0000 |" in out and (tmp_path / "crossfit-tuning" / "s" / "sweep.json").is_file()


def test_passthrough_pairs_each_variant_over_two_policies(tmp_path, shipped_data):
    paths = Paths(shipped_data, tmp_path)
    _synthetic_dumps(paths, "knows", folds=3)
    _synthetic_dumps(paths, "misses", folds=3, target_at=3)  # the same rows, the target last in the beam
    result = {e["variant"]: e for e in passthrough(paths, "knows", "misses", [0], [1.0], folds=3)}
    assert result["policy alone"]["against_served"]["HR@1"] == (-1.0, -1.0, -1.0)
    assert result["scorers, saved ranker, w=1"]["HR@1"] == 0.0  # the beam alone, its target fourth
    _synthetic_dumps(paths, "fewer", folds=3, rows=20)
    with pytest.raises(SystemExit, match="different rows"):
        passthrough(paths, "knows", "fewer", [0], [1.0], folds=3)


def test_frontier_prices_each_design_and_passes_a_change_of_policy_through_it(tmp_path, shipped_data, capsys):
    assert interleave([7, 1, 8], [1, 2, 3], "rp") == [1, 7, 2, 8, 3]  # an item already listed is skipped
    assert interleave([7], [1, 2, 3], "pp") == [7, 1, 2, 3]  # a list that runs out leaves its slots to the other
    paths = Paths(shipped_data, tmp_path)
    _synthetic_dumps(paths, "knows", folds=3)
    _synthetic_dumps(paths, "misses", folds=3, target_at=3)
    result = {e["variant"]: e for e in frontier(paths, "knows", ["misses"], [0], folds=3)}
    served = result["blend, w=0"]  # the synthetic dumps' ranker serves alone
    assert served["against_served"]["HR@1"] == (0.0, 0.0, 0.0)
    assert result["interleaved, pr"]["HR@1"] == 1.0 and result["policy alone"]["HR@1"] == 1.0  # the beam's first
    assert result["interleaved, pr"]["changes"]["misses"]["HR@1"][0] == -1.0  # the target fourth in the beam
    assert result["blend, w=0.8"]["HR@1"] > served["HR@1"]
    main(["--data", str(shipped_data), "--out", str(tmp_path), "--label", "knows", "--seeds", "0", "--folds", "3",
          "frontier", "misses"])  # fmt: skip
    assert "| product, power 1 |" in capsys.readouterr().out
    assert (tmp_path / "crossfit-tuning" / "knows" / "frontier.json").is_file()
