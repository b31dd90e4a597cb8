"""``ops.experiments.targets`` on the shipped data's held-out split: groups by how often a target was taught, and
rankings compared within them."""

from __future__ import annotations

import json

import pytest

from learner.sft_trainer import SOURCE_HISTORY
from ops.experiments.policy import Paths, prepare
from ops.experiments.targets import GROUPS, by_target, main, pooled_hits, target_groups
from recast.dataset import load_catalog, load_interactions
from recast.windows import build_sequences


def test_groups_follow_the_training_windows(tmp_path, shipped_data):
    paths = Paths(shipped_data, tmp_path)
    prepare(paths)
    groups = target_groups(shipped_data, paths.split / "train.csv", paths.split / "heldout.csv")
    catalog = load_catalog(shipped_data)
    held = load_interactions(paths.split / "heldout.csv", catalog)
    windows = build_sequences(load_interactions(paths.split / "train.csv", catalog), catalog.index, SOURCE_HISTORY)
    taught = [s.items[j] for s in windows for j in range(1, len(s.items)) if s.weights[j] > 0]
    assert len(groups) == len(held) and set(groups) <= set(GROUPS)
    for row, group in zip(held, groups, strict=True):
        n = taught.count(catalog.index[row.target])
        if group == "a history item":
            assert row.target in row.history
        else:
            assert row.target not in row.history
            assert {"0": n == 0, "1-4": 1 <= n < 5, "5-19": 5 <= n < 20, "20+": n >= 20}[group], (group, n)
    assert len(set(groups)) >= 4  # the shipped rows are not all one kind


def test_the_first_ranking_against_the_second_by_group():
    groups = ["0", "0", "20+", "a history item"]
    table = by_target(groups, [[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
    rows = {e["group"]: e for e in table}
    assert list(rows) == ["a history item", "0", "20+", "all"]  # empty groups are left out
    assert rows["0"]["hr10"] == [0.5, 0.0] and rows["0"]["share"] == pytest.approx(0.25)
    assert rows["20+"]["delta"] == (0.0, 0.0, 0.0)
    assert rows["all"]["share"] == pytest.approx(sum(e["share"] for e in table[:-1])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="another split"):
        by_target(groups, [[1.0, 0.0]])


def test_rankings_are_pooled_over_a_confirm_folders_seeds(tmp_path, capsys):
    for seed, ranks in ((0, [0, None, 12]), (1, [3, 9, None])):
        (tmp_path / f"seed{seed}").mkdir()
        (tmp_path / f"seed{seed}" / "result.json").write_text(json.dumps({"ranks": {"policy": ranks}}))
    assert pooled_hits(tmp_path, "policy") == [1.0, 0.5, 0.0]
    with pytest.raises(SystemExit, match="no ranking 'served'"):
        pooled_hits(tmp_path, "served")
    with pytest.raises(SystemExit, match="no seed"):
        pooled_hits(tmp_path / "seed0", "policy")
    with pytest.raises(SystemExit):
        main(["no-ranking-named"])
    assert "FOLDER:RANKING" in capsys.readouterr().err


def test_inner_reads_tune_folders_on_the_tuning_rows(tmp_path, shipped_data, capsys):
    paths = Paths(shipped_data, tmp_path)
    counts = prepare(paths)
    run = tmp_path / "tune" / "default+x"
    (run / "seed0").mkdir(parents=True)
    (run / "seed0" / "result.json").write_text(json.dumps({"ranks": {"policy": [0] * counts["tune"]}}))
    main(["--data", str(shipped_data), "--out", str(tmp_path), "--inner", f"{run}:policy"])
    table = capsys.readouterr().out
    assert f"| all | {counts['tune']} | 1.000 |" in table
    with pytest.raises(ValueError, match="another split"):  # the same folder against the held-out rows
        main(["--data", str(shipped_data), "--out", str(tmp_path), f"{run}:policy"])
