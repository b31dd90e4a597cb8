"""`recast demo` as a user runs it: the closed loop on its own embedded stack, two simulated days with a
refresh each night through Celery beat, the day table, the plot, the audit report of its refreshes, and nothing
left running afterwards."""

from __future__ import annotations

import json

import pytest

from ops.stack import status
from tests.support.cli import recast
from tests.support.data import valid_rows

pytestmark = pytest.mark.slow


def test_recast_demo_runs_the_closed_loop_day_by_day(tmp_path, shipped_data, tiny_checkpoint):
    shoppers = valid_rows(tmp_path / "shoppers.csv", 50)
    gate = valid_rows(tmp_path / "gate.csv", 4060, start=4000)
    run = tmp_path / "run"
    proc = recast("demo", "--checkpoint", str(tiny_checkpoint), "--split", str(shoppers), "--gate", str(gate),
                  "--data", str(shipped_data), "--days", "2", "--period-s", "12", "--run-dir", str(run),
                  "--no-progress", timeout=900)  # fmt: skip
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
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert ["1", result["initial_version"], "25"] in [r[:3] for r in rows], proc.stdout
    assert "INFO" not in proc.stderr  # library logs go to the log file, not the terminal
    assert (run / "logs" / "demo.log").stat().st_size > 0
    assert status(run / "stack") is None  # everything it started is stopped
