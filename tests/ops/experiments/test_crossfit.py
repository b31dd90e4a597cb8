"""``ops.experiments.crossfit`` on the shipped data with the tiny preset: folds that never score a tuning user and
never train on their own users, fold 0 read from ``confirm``'s runs, and the report pooled over folds."""

from __future__ import annotations

import json
import math

import pytest

from ops.experiments.crossfit import fold_files, main, prepare_folds, report, run, run_dir
from ops.experiments.policy import Paths
from recast.dataset import load_catalog, load_interactions


def test_folds_partition_every_user_but_the_tuning_ones(tmp_path, shipped_data):
    paths = Paths(shipped_data, tmp_path)
    counts = prepare_folds(paths, folds=4)
    catalog = load_catalog(shipped_data)
    users = lambda csv: {r.user_id for r in load_interactions(csv, catalog)}  # noqa: E731
    tune = users(paths.inner / "tune.csv")
    scored = [users(fold_files(paths, k)[1]) for k in range(4)]
    assert scored[0] == users(paths.split / "heldout.csv")
    assert sum(counts.values()) + sum(1 for _ in load_interactions(paths.inner / "tune.csv", catalog)) == 4532
    everyone = users(shipped_data / "valid.csv")
    assert set().union(*scored) == everyone - tune and sum(map(len, scored)) == len(everyone - tune)
    for k in range(4):
        train = users(fold_files(paths, k)[0])
        assert train == everyone - scored[k] and tune <= train  # every fold trains on every other user
    assert max(map(len, scored[1:])) - min(map(len, scored[1:])) <= 1


def test_the_tuning_scope_never_reads_the_held_out_users(tmp_path, shipped_data):
    paths = Paths(shipped_data, tmp_path)
    held_out_counts = prepare_folds(paths, folds=4)
    counts = prepare_folds(paths, folds=4, scope="tuning")
    catalog = load_catalog(shipped_data)
    users = lambda csv: {r.user_id for r in load_interactions(csv, catalog)}  # noqa: E731
    held, train = users(paths.split / "heldout.csv"), users(paths.split / "train.csv")
    assert fold_files(paths, 0, "tuning") == (paths.inner / "fit.csv", paths.inner / "tune.csv")
    assert counts[0] == sum(1 for _ in load_interactions(paths.inner / "tune.csv", catalog))
    for k in range(1, 4):  # the same fit users scored, trained on the training split without them
        train_csv, eval_csv = fold_files(paths, k, "tuning")
        assert eval_csv.read_text() == fold_files(paths, k)[1].read_text() and counts[k] == held_out_counts[k]
        assert users(train_csv) == train - users(eval_csv) and not users(train_csv) & held
    assert run_dir(paths, "p", 0, 1, "tuning") == tmp_path / "crossfit-tuning" / "p" / "fold0" / "seed1"
    with pytest.raises(ValueError, match="unknown scope"):
        fold_files(paths, 1, "test")


def _write_runs(paths, counts, label, ranks_of):
    for k, n in counts.items():
        out = run_dir(paths, label, k, 0)
        out.mkdir(parents=True)
        done = {"eval_csv": str(fold_files(paths, k)[1]), "ranks": {name: f(k, n) for name, f in ranks_of.items()}}
        (out / "result.json").write_text(json.dumps(done))


def test_runs_are_pooled_over_the_folds_against_the_first_ranking(tmp_path, shipped_data, capsys):
    paths = Paths(shipped_data, tmp_path)
    counts = prepare_folds(paths, folds=3)
    total = sum(counts.values())
    # The policy ranks every target of fold 0 first and misses the rest; the transitions hit every row at rank 5.
    _write_runs(paths, counts, "p", {"policy": lambda k, n: [0 if k == 0 else None] * n,
                                     "transition": lambda k, n: [5] * n})  # fmt: skip
    assert (tmp_path / "confirm" / "p" / "seed0" / "result.json").is_file()  # fold 0 is confirm's run
    result = report(paths, [("p", "policy"), ("p", "transition"), ("p", "policy")], seeds=[0], folds=3)
    assert result["rows"] == counts
    policy, transition = result["rankings"]["p:policy"], result["rankings"]["p:transition"]
    assert policy["0"] == {"HR@1": 1.0, "HR@10": 1.0, "NDCG@10": 1.0} and policy["1"]["HR@10"] == 0.0
    assert policy["all"]["HR@10"] == pytest.approx(counts[0] / total)
    assert transition["all"] == {"HR@1": 0.0, "HR@10": 1.0, "NDCG@10": pytest.approx(1 / math.log2(7))}
    against = result["against_first"]
    assert against["p:policy"]["all"]["HR@10"] == (0.0, 0.0, 0.0)  # a ranking against itself
    assert against["p:transition"]["0"]["HR@10"] == (0.0, 0.0, 0.0)  # both hit every row of fold 0
    mean, low, high = against["p:transition"]["all"]["HR@1"]
    assert mean == pytest.approx(counts[0] / total) and low < mean < high  # whole users resampled: it varies
    with pytest.raises(SystemExit, match="not run"):
        report(paths, [("p", "policy")], seeds=[0, 1], folds=3)
    with pytest.raises(SystemExit, match="not .*served"):
        report(paths, [("p", "served")], seeds=[0], folds=3)
    main(["--data", str(shipped_data), "--out", str(tmp_path), "--folds", "3", "report", "p:policy", "p:transition"])
    out = capsys.readouterr().out
    assert f"{total} rows" in out and f"| all | {counts[0] / total:+.4f} [" in out  # policy − transition, HR@1
    assert json.loads((tmp_path / "crossfit" / "report.json").read_text())["rows"] == {str(k): n for k, n in
                                                                                       counts.items()}  # fmt: skip


def test_run_refuses_a_fold_that_was_not_prepared(tmp_path, shipped_data):
    paths = Paths(shipped_data, tmp_path)
    prepare_folds(paths, folds=3)
    with pytest.raises(SystemExit, match="no such fold"):
        run(paths, "tiny", [3], seed=0, beam_width=5, overrides={})
