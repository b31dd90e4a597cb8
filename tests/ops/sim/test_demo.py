"""The simulated shoppers (the whole online loop, `recast demo`, runs in tests/ops/cli/test_demo.py)."""

from __future__ import annotations

import random

import pytest

from ops.sim.shoppers import ApiClient, Visit, outcomes_for


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
