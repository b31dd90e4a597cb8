"""The ingestion benchmark, tiny: its own stack, a few hundred events, and the exact-count check passes."""

import json

from ops.bench.ingest import main


def test_bench_ingest_smoke_counts_exactly(tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = main(["--events", "300", "--quiet", "--timeout", "60", "--json", str(out)])
    assert result["events"] >= 300
    assert result["verification"]["ok"], result["verification"]
    checks = result["verification"]["checks"]
    assert checks["reward_groups"]["found"] == result["impressions"]
    assert checks["outcomes"]["found"] == result["outcomes"]
    assert result["lag_samples"][-1][1] == 0  # drained
    assert result["e2e_events_per_s"] > 0 and result["produce_events_per_s"] > 0
    assert json.loads(out.read_text())["verification"]["ok"]
    printed = capsys.readouterr().out
    assert "PASS: zero lost, zero double-counted" in printed and "end-to-end" in printed
