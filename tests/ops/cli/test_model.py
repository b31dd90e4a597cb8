"""The `recast` command end to end, as a user runs it: real processes, real files."""

import csv
import json

import pytest

from tests.support.cli import recast
from tests.support.paths import DATA


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    split = json.loads(recast("split", "--data", str(DATA), "--out", str(run / "split"), "--holdout", "0.1").stdout)
    recast(
        "train",
        "--data",
        str(DATA),
        "--train",
        str(run / "split" / "train.csv"),
        "--preset",
        "tiny",
        "--out",
        str(run / "ckpt"),
        "--no-progress",
    )
    report = json.loads(
        recast(
            "eval",
            "--data",
            str(DATA),
            "--split",
            str(run / "split" / "heldout.csv"),
            "--checkpoint",
            str(run / "ckpt"),
            "--predictions",
            str(run / "pred.jsonl"),
            "--beams",
            "20",
            "--no-progress",
        ).stdout
    )
    return run, split, report


def test_split_is_by_user_and_covers_every_row(pipeline):
    run, split, _ = pipeline
    with (run / "split" / "train.csv").open() as f:
        train_users = {r["user_id"] for r in csv.DictReader(f)}
    with (run / "split" / "heldout.csv").open() as f:
        held = list(csv.DictReader(f))
    assert not train_users & {r["user_id"] for r in held}
    assert split["train_rows"] + split["heldout_rows"] == 4532
    assert split["heldout_rows"] == len(held) > 0


def test_eval_reports_every_metric_for_every_ranking(pipeline):
    _, split, report = pipeline
    rankings = [report["policy"], report["served"], *report["baselines"].values()]
    assert set(report["baselines"]) == {"popularity", "transition", "text"}
    for metrics in rankings:
        assert metrics["rows"] == split["heldout_rows"]
        for k in (1, 3, 5, 10):
            assert 0.0 <= metrics[f"NDCG@{k}"] <= metrics[f"HR@{k}"] <= 1.0
        assert metrics["Pass@1"] == metrics["HR@1"]
    assert report["baselines"]["transition"]["HR@10"] > report["baselines"]["popularity"]["HR@10"]
    assert report["beam_width"] == 20


def test_predictions_are_the_served_ranking_one_line_per_row(pipeline):
    run, split, report = pipeline
    lines = [json.loads(line) for line in (run / "pred.jsonl").read_text().splitlines()]
    assert [line["row"] for line in lines] == list(range(split["heldout_rows"]))
    items = json.loads((DATA / "items.json").read_text())
    assert all(len(line["items"]) == len(set(line["items"])) >= 10 for line in lines)
    assert all(i in items for line in lines for i in line["items"])
    # HR@10 recomputed from the file equals the report's served HR@10.
    with (run / "split" / "heldout.csv").open() as f:
        targets = [r["item_id"] for r in csv.DictReader(f)]
    hits = sum(t in line["items"][:10] for t, line in zip(targets, lines))
    assert hits / len(lines) == pytest.approx(report["served"]["HR@10"])


def test_eval_writes_its_report_beside_the_checkpoint_by_default(pipeline):
    run, _, report = pipeline
    # Beside the checkpoint, not in it: a format-2 checkpoint refuses a file its manifest does not list.
    assert json.loads((run / "ckpt-eval-heldout.json").read_text()) == report  # what it printed
    assert not (run / "ckpt" / "eval-heldout.json").exists()


def test_eval_records_metrics_in_the_manifest(pipeline):
    run, _, report = pipeline
    manifest = json.loads((run / "ckpt" / "manifest.json").read_text())
    assert manifest["metrics"]["eval:heldout.csv"]["served"] == report["served"]


def test_bad_input_fails_with_a_clear_message(pipeline, tmp_path):
    run, _, _ = pipeline
    bad = tmp_path / "bad.csv"
    bad.write_text('user_id,history_item_id,item_id\nU1,"[1, 2]",999999\n')
    proc = recast("eval", "--data", str(DATA), "--split", str(bad), "--checkpoint", str(run / "ckpt"), check=False)
    assert proc.returncode == 2
    assert "bad.csv:2" in proc.stderr and "unknown item id" in proc.stderr and "999999" in proc.stderr
    proc = recast("train", "--train", str(bad), "--out", str(tmp_path / "x"), "--preset", "huge", check=False)
    assert proc.returncode == 2 and "choose one of" in proc.stderr


def test_fusion_overrides_are_validated_and_applied(pipeline):
    run, _, _ = pipeline
    args = ["eval", "--data", str(DATA), "--split", str(run / "split" / "heldout.csv"), "--checkpoint",
            str(run / "ckpt"), "--beams", "20", "--no-progress", "--report", str(run / "override.json")]  # fmt: skip
    proc = recast(*args, check=False, env={"RECAST_FUSION_POLICY_WEIGHT": "0.9"})  # 0.9 + default text 0.3 > 1
    assert proc.returncode == 2 and "text_weight" in proc.stderr
    env = {"RECAST_FUSION_POLICY_WEIGHT": "0.9", "RECAST_FUSION_TEXT_WEIGHT": "0.1"}
    assert not (run / "override.json").exists()  # the refused run wrote no report
    report = json.loads(recast(*args, env=env).stdout)
    assert report["fusion"]["policy_weight"] == 0.9 and report["fusion"]["text_weight"] == 0.1
    assert json.loads((run / "override.json").read_text()) == report  # --report: the same report, where asked


def test_help_explains_the_commands():
    out = recast("--help").stdout
    for command in ("split", "train", "eval"):
        assert command in out
    assert "--predictions" in recast("eval", "--help").stdout
