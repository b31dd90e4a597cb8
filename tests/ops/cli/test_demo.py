"""`recast demo` as a user runs it: its own embedded stack, the API and the ingestion worker as subprocesses,
simulated shoppers, and the reward groups it prints. The stack stays up afterwards, as the README says."""

from __future__ import annotations

import ast
import re

import pytest

from tests.support.cli import recast
from tests.support.data import valid_rows

pytestmark = pytest.mark.slow

VISITS = 40


def test_demo_turns_served_lists_and_outcomes_into_reward_groups(tmp_path, shipped_data, tiny_checkpoint):
    split, run = valid_rows(tmp_path / "split.csv", VISITS), tmp_path / "run"
    try:
        proc = recast("demo", "--checkpoint", str(tiny_checkpoint), "--split", str(split), "--data",
                      str(shipped_data), "--users", str(VISITS), "--run-dir", str(run), "--no-progress")  # fmt: skip
        still_up = recast("status", "--dir", str(run / "stack"), check=False)
    finally:
        recast("down", "--dir", str(run / "stack"), check=False)
    out = proc.stdout
    visits = re.search(r"^visits (\d+), .* outcomes sent (\{.*\}), errors (.+)$", out, re.M)
    assert visits, out
    assert int(visits[1]) == VISITS and visits[3] == "none"
    sent = ast.literal_eval(visits[2])  # outcomes by type, "organic" for those found off the list
    ingested = re.search(r"^ingested (\d+) events \((\d+) impressions, (\d+) outcomes\), (\d+) outcomes credited "
                         r"to a served list, (\d+) dead letters$", out, re.M)  # fmt: skip
    assert ingested, out
    messages, impressions, outcomes, credited, dead = map(int, ingested.groups())
    assert impressions == VISITS and outcomes == sum(sent.values()) and dead == 0
    assert messages == impressions + outcomes  # no duplicate read, nothing dead-lettered
    # Every outcome naming its list lands on it; an off-list one may land on another list of the same user.
    assert credited >= sum(v for k, v in sent.items() if k != "organic")
    table = out[out.index("segment") :].splitlines()[1:]
    rows = {line.split()[0]: int(line.split()[1]) for line in table}
    assert set(rows) <= {"new", "returning"} and sum(rows.values()) == VISITS  # one reward group per list
    assert still_up.returncode == 0  # the stack stays up for a look until `recast down`
