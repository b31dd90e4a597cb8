"""The shoppers, and the closed loop end to end on its own embedded stack: serve, shop, ingest, refresh, swap."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from ops.sim.shoppers import ApiClient, Visit, outcomes_for
from recast.dataset import write_interactions

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def test_shoppers_act_on_what_was_served():
    from datetime import UTC, datetime

    rng, t0 = random.Random(0), datetime.now(UTC)
    hit = Visit("u", ["1"], "42")
    events = [e for _ in range(200) for e in outcomes_for(hit, "r1", ["42", "7"], rng, t0)]
    on_list = [e for e in events if e["item_id"] == "42"]
    assert on_list and all(e["request_id"] == "r1" for e in on_list)
    assert {e["type"] for e in on_list} == {"click", "add_to_cart", "purchase"}
    missed = [e for _ in range(200) for e in outcomes_for(hit, "r2", ["7", "8"], rng, t0)]
    assert {e["request_id"] for e in missed if e["item_id"] == "42"} == {None}  # organic: found off the list
    assert len({e["event_id"] for e in events}) == len(events)


def test_the_simulator_targets_loopback_only():
    with pytest.raises(ValueError, match="127.0.0.1 only"):
        ApiClient("http://10.0.0.1:8000", "k")


def test_recast_demo_runs_the_closed_loop_day_by_day(tmp_path, shipped_data, tiny_checkpoint):
    """`recast demo` as a user runs it: two days, a refresh each night through Celery beat, the table, the plot and
    the audit report."""
    shoppers, gate = tmp_path / "shoppers.csv", tmp_path / "gate.csv"
    write_interactions(shipped_data / "valid.csv", shoppers, set(range(50)))
    write_interactions(shipped_data / "valid.csv", gate, set(range(4000, 4060)))
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "ops.cli", "demo", "--checkpoint", str(tiny_checkpoint), "--split", str(shoppers),
         "--gate", str(gate), "--data", str(shipped_data), "--days", "2", "--period-s", "12",
         "--run-dir", str(run), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run / "loop.json").read_text())
    days = result["days"]
    assert [d["visits"] for d in days] == [25, 25] and all(not d["errors"] for d in days)
    assert all(d["refresh"]["status"] == "succeeded" for d in days), [d["refresh"] for d in days]
    first = days[0]["refresh"]
    assert list(days[0]["versions"]) == [result["initial_version"]]
    expected = first["version"] if first["decision"] == "published" else result["initial_version"]
    assert list(days[1]["versions"]) == [expected]  # day 2 is served by what the gate decided at night 1
    assert (run / "loop.png").stat().st_size > 10_000
    # It ends with the audit of its refreshes: the report written, where it is printed.
    assert result["audit"]["runs"] == [d["refresh"]["id"] for d in days]
    report = (run / "audit.html").read_text()
    assert len(report) > 10_000 and "Audit of repaired signals" in report
    assert proc.stdout.splitlines()[-1].startswith(f"audit report: {run / 'audit.html'} (runs ")
    table = proc.stdout.splitlines()
    assert any(line.split()[:2] == ["1", result["initial_version"]] for line in table), proc.stdout
    assert "INFO" not in proc.stderr  # library logs go to the log file, not the terminal
    assert (run / "logs" / "demo.log").exists()
    from ops.stack import status

    assert status(run / "stack") is None  # everything it started is stopped
