"""The cold-start experiment on the product path: its held-out items added over real HTTP (``POST
/v1/admin/items``) to a real ``recast serve`` on the session's Postgres and Kafka, its rows asked of
``POST /v1/recommend``, and every answer held against the in-process figures the experiment recorded."""

from __future__ import annotations

import json
import uuid
from argparse import Namespace

import pytest

from ops.experiments import coldstart, coldstart_api
from ops.stack.servers import create_topics
from tests.support.databases import fresh_database

pytestmark = pytest.mark.slow

# 100 new items (one add request, so the API codes them exactly as the experiment does) and 445 rows, 10 of them
# with a new item as the target; a tiny policy trained on 2,000 rows (about 10 s).
SHARES = {"item_share": 0.027, "user_share": 0.1}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, shipped_data):
    import torch

    out = tmp_path_factory.mktemp("coldstart")
    threads = torch.get_num_threads()  # main() sets the process's, as a command does
    try:
        coldstart.main(["--data", str(shipped_data), "--out", str(out), "--seeds", "0", "--preset", "tiny", "--epochs",
                        "1", "--max-train-rows", "2000", "--item-share", str(SHARES["item_share"]), "--user-share",
                        str(SHARES["user_share"]), "--codes", "used", "--factors", "0", "--neighbours", "1",
                        "--impute", "0"])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return out


def test_the_api_serves_the_experiments_ranking_row_for_row_before_and_after_adding(experiment, stack, shipped_data):
    recorded = json.loads((experiment / "seed-0" / "ranks.json").read_text())
    topics = [f"imp-{uuid.uuid4().hex[:8]}", f"out-{uuid.uuid4().hex[:8]}"]
    create_topics(stack.services["kafka"].url, topics, 1)
    env = {**stack.env(), "RECAST_IMPRESSIONS_TOPIC": topics[0], "RECAST_OUTCOMES_TOPIC": topics[1]}
    args = Namespace(data=shipped_data, out=experiment, beam_width=20, concurrency=4, threads=1, **SHARES)
    with fresh_database(stack, "coldstart") as url:
        run = coldstart_api.run_seed(args, 0, env, url)
    assert recorded["new_items"] == run["new_items"] == run["codes_as_the_experiment"] == 100
    sizes = {"cold_served": recorded["cold_rows"], "warm_after": recorded["warm_rows"],
             "warm_before": recorded["warm_rows"], "mixed_after": recorded["mixed_rows"],
             "mixed_before": recorded["mixed_rows"]}  # fmt: skip
    assert min(sizes.values()) > 0  # every kind of row is there to disagree
    assert run["rows_as_the_experiment"] == sizes
    # The API's own figures: adding the items lists some cold targets, which were unlistable before.
    figures = coldstart_api.figures([run])
    assert figures["cold"]["served"]["hr@10"] > 0
    assert figures["all"]["before"]["rows"] == figures["all"]["after"]["rows"] == sum(
        recorded[k] for k in ("cold_rows", "warm_rows", "mixed_rows"))
