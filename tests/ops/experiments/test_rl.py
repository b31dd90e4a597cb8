"""`recast experiment` and `recast rl` as a user runs them, at toy scale."""

import csv
import json

from recast.checkpoint import load_checkpoint
from tests.support.cli import recast
from tests.support.data import valid_rows
from tests.support.paths import DATA


def test_rl_runs_from_an_sft_checkpoint_and_writes_its_run(tmp_path, tiny_checkpoint):
    """`recast rl` as a user runs it, at toy scale: exit 0, a JSON summary, the diagnostics, the repairs
    audit and a child checkpoint of the SFT one."""
    train, held = valid_rows(tmp_path / "rl.csv", 260, start=200), valid_rows(tmp_path / "eval.csv", 300, start=260)
    older, out = valid_rows(tmp_path / "older.csv", 200), tmp_path / "run"  # the default method replays them
    proc = recast("rl", "--sft", str(tiny_checkpoint), "--train", str(train), "--eval", str(held),
                  "--replay", str(older), "--out", str(out), "--data", str(DATA), "--preset", "tiny", "--steps", "2",
                  "--eval-every", "2", "--no-progress")  # fmt: skip
    summary = json.loads(proc.stdout)
    assert summary["checkpoint"] == str(out / "checkpoint")
    diagnostics = [json.loads(line) for line in (out / "diagnostics.jsonl").read_text().splitlines()]
    assert [d["step"] for d in diagnostics] == [0, 1, 2]
    assert summary["start"] == diagnostics[0]["eval"] and summary["final"] == diagnostics[-1]["eval"]
    assert 0.0 <= summary["final"]["Pass@1"] <= summary["final"]["HR@10"] <= 1.0
    assert (out / "repairs.jsonl").is_file() and (out / "diagnostics.png").stat().st_size > 10_000
    child, parent = load_checkpoint(out / "checkpoint"), load_checkpoint(tiny_checkpoint)
    assert child.manifest["kind"] == "rl" and child.manifest["parent"] == parent.version
    assert child.manifest["rl_config"]["method"] == "recast" and child.manifest["rl_config"]["steps"] == 2


def test_experiment_writes_a_report_for_every_width_and_arm(tmp_path):
    train = valid_rows(tmp_path / "train.csv", 400)
    out = tmp_path / "exp"
    args = ["experiment", "--data", str(DATA), "--train", str(train), "--out", str(out), "--widths", "4,6",
            "--arms", "grpo,recast", "--seeds", "0,1", "--preset", "tiny", "--sft-preset", "tiny", "--steps", "2",
            "--jobs", "2", "--no-progress"]  # fmt: skip
    proc = recast(*args)
    assert "SFT start: Pass@1" in proc.stdout and "### W = 6" in proc.stdout and "users resampled" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert set(report["widths"]) == {"4", "6"}
    assert report["eval_split"].endswith("tune.csv")  # no --eval: tuning figures, not held-out ones
    sizes = report["rows"]
    assert sizes["sft"] > sizes["rl"] > sizes["tune"] > 0 and sum(sizes.values()) == 400
    splits = {name: {r[0] for r in list(csv.reader((out / "splits" / f"{name}.csv").open()))[1:]}
              for name in ("sft", "rl", "tune")}  # fmt: skip
    assert not (splits["sft"] & splits["rl"]) and not (splits["sft"] & splits["tune"])  # disjoint users
    for width in ("4", "6"):
        block = report["widths"][width]
        recast_arm = block["arms"]["recast"]
        assert recast_arm["budget"] == block["arms"]["grpo"]["budget"] == 2 * 8 * int(width)  # same rollout budget
        assert recast_arm["actor_speedup"] > 0 and recast_arm["peak_rss_bytes"] > 0
        assert recast_arm["actor_rows_mean"] < block["arms"]["grpo"]["actor_rows_mean"]
        for metric in ("Pass@1", "HR@10", "NDCG@10"):
            ci = recast_arm["delta_vs_baseline"][metric]
            assert ci["lo"] <= ci["mean"] <= ci["hi"]
        assert recast_arm["seeds"] == [0, 1] and set(recast_arm["final_by_seed"]) == {"0", "1"}
        for seed in (0, 1):
            assert (out / f"W{width}" / "recast" / f"s{seed}" / "diagnostics.png").is_file()
            assert (out / f"W{width}" / "grpo" / f"s{seed}" / "checkpoint" / "manifest.json").is_file()
    assert (out / "report.png").stat().st_size > 10_000 and (out / "report.md").is_file()
    # A second run (an interrupted one resumed) reuses the SFT start and the finished arms.
    stamps = [(out / p).stat().st_mtime_ns for p in ("sft/manifest.json", "W4/recast/s1/result.json")]
    proc = recast(*[a if a != "4,6" else "4" for a in args])
    assert [(out / p).stat().st_mtime_ns for p in ("sft/manifest.json", "W4/recast/s1/result.json")] == stamps
    assert "already finished" in proc.stderr


def test_bad_arguments_fail_with_the_reason(tmp_path):
    proc = recast("experiment", "--train", str(DATA / "valid.csv"), "--out", str(tmp_path), "--arms", "recast,ppo",
                  check=False)  # fmt: skip
    assert proc.returncode == 2 and "unknown arm" in proc.stderr and "above+sup" in proc.stderr
    proc = recast("rl", "--sft", str(tmp_path / "missing"), "--train", str(DATA / "valid.csv"), "--eval",
                  str(DATA / "valid.csv"), "--out", str(tmp_path / "o"), "--method", "ppo", check=False)  # fmt: skip
    assert proc.returncode == 2 and "method" in proc.stderr and "recast-literal" in proc.stderr


def test_a_tuning_grid_runs_every_arm_at_every_rate_and_picks_one_each(tmp_path):
    train = tmp_path / "train.csv"
    with (DATA / "valid.csv").open() as f, train.open("w", newline="") as out:
        csv.writer(out, lineterminator="\n").writerows(list(csv.reader(f))[:401])
    out = tmp_path / "tune"
    recast("experiment", "--data", str(DATA), "--train", str(train), "--out", str(out), "--widths", "4",
           "--arms", "grpo,above", "--lr-grid", "1e-4,1e-3", "--preset", "tiny", "--sft-preset", "tiny",
           "--steps", "2", "--no-progress")  # fmt: skip
    block = json.loads((out / "report.json").read_text())["widths"]["4"]
    assert set(block["arms"]) == {"grpo@0.0001", "grpo@0.001", "above@0.0001", "above@0.001"}
    assert set(block["chosen_lr"]) == {"grpo", "above"} and block["chosen_lr"]["above"] in (1e-4, 1e-3)
