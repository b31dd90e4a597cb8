"""The audit routes over real HTTP against a real Postgres holding two refreshes' ledgers and snapshots."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.settings import Settings
from serving.auth import digest
from tests.support.api import ADMIN, KEY, ApiServer
from tests.support.audit import T0, seed_audit
from tests.support.databases import fresh_database


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory, shipped_data):
    with fresh_database(stack, "audit") as db:
        seeded = seed_audit(db)
        settings = Settings(
            data_dir=shipped_data, api_keys=digest(KEY), admin_token_sha256=digest(ADMIN), database_url=db,
            kafka_bootstrap=stack.services["kafka"].url, spool_dir=tmp_path_factory.mktemp("spool"), registry_poll_s=0,
        )  # fmt: skip
        with ApiServer(settings) as server:
            yield server, seeded


def get(server, path: str, token: str | None = ADMIN, **params):
    with server.client(token) as c:
        return c.get(path, params=params)


def ids(body) -> list[tuple[int, str, str]]:
    return [(r["run_id"], r["request_id"], r["anchor_source"]) for r in body["repairs"]]


def test_only_the_admin_token_reads_the_audit(env):
    server, _ = env
    for path in ("/v1/audit/repairs", "/v1/audit/segments"):
        assert get(server, path, token=None).status_code == 401
        assert get(server, path, token=KEY).status_code == 403
        assert get(server, path).status_code == 200


def test_the_ledger_filtered_by_run_version_segment_and_time(env):
    server, seeded = env
    one, two = seeded.run_ids
    body = get(server, "/v1/audit/repairs").json()
    assert body["total"] == 5 and body["next_offset"] is None
    assert ids(body) == [(one, "r1", "organic_purchase"), (one, "r2", "organic_click"), (one, "r3", "organic_click"),
                         (two, "r3", "organic_purchase"), (two, "r5", "organic_add_to_cart")]  # fmt: skip
    first = body["repairs"][0]
    assert (first["segment"], first["history_segment"], first["category"], first["anchor_item"],
            first["replaced_item"]) == ("web", "new", "Tools", "42", "7")  # fmt: skip
    assert (first["anchor_logprob"], first["replaced_logprob"], first["anchor_rank_before"],
            first["anchor_rank_after"]) == (-6.5, -3.25, None, 4)  # fmt: skip
    assert [r["request_id"] for r in get(server, "/v1/audit/repairs", run=one).json()["repairs"]] == ["r1", "r2", "r3"]
    assert ids(get(server, "/v1/audit/repairs", version="v-c").json()) == ids(
        get(server, "/v1/audit/repairs", run=two).json())
    assert [r["request_id"] for r in get(server, "/v1/audit/repairs", segment="request:web").json()["repairs"]] == [
        "r1", "r2"]
    # A bare segment matches any dimension: r3's category and r5's request segment are unknown.
    assert [(r["run_id"], r["request_id"]) for r in get(server, "/v1/audit/repairs", segment="unknown").json()[
        "repairs"]] == [(one, "r3"), (two, "r3"), (two, "r5")]  # fmt: skip
    later = get(server, "/v1/audit/repairs", since=(T0 + timedelta(hours=12)).isoformat()).json()
    assert [r["run_id"] for r in later["repairs"]] == [two, two]
    earlier = get(server, "/v1/audit/repairs", until=(T0 + timedelta(hours=12)).isoformat()).json()
    assert earlier["total"] == 3


def test_the_ledger_is_paginated(env):
    server, _ = env
    pages, offset = [], 0
    while offset is not None:
        body = get(server, "/v1/audit/repairs", limit=2, offset=offset).json()
        assert body["total"] == 5 and len(body["repairs"]) <= 2
        pages.append([r["id"] for r in body["repairs"]])
        offset = body["next_offset"]
    assert [len(p) for p in pages] == [2, 2, 1]
    every = [i for p in pages for i in p]
    assert every == sorted(every) and len(set(every)) == 5


@pytest.mark.parametrize(("params", "reason"), [
    ({"segment": "age:young"}, "the dimension must be one of request, history, category"),
    ({"segment": "history:"}, "name a segment"),
    ({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "must be before until"),
    ({"since": "2026-12-01T00:00:00"}, "since needs a timezone"),
    ({"limit": 0}, "limit must lie in 1..500"),
    ({"offset": -1}, "offset must be >= 0"),
    ({"run": 0}, "run must be a run id"),
])  # fmt: skip
def test_a_bad_filter_is_a_422_that_says_why(env, params, reason):
    server, _ = env
    for path in ("/v1/audit/repairs", "/v1/audit/segments"):
        response = get(server, path, **params)
        assert response.status_code == 422 and reason in response.json()["detail"], response.text
    assert get(server, "/v1/audit/repairs", run="one").status_code == 422  # not a number: FastAPI's own 422


def test_segments_per_run_newest_first_with_the_flagged_ones(env):
    server, seeded = env
    one, two = seeded.run_ids
    body = get(server, "/v1/audit/segments").json()
    assert body["total"] == 2 and [r["run_id"] for r in body["runs"]] == [two, one]
    latest, first = body["runs"]
    assert (first["version"], first["parent_version"], first["decision"]) == ("v-b", "v-a", "published")
    assert first["flagged"] == ["request:web", "history:new"] and latest["flagged"] == []
    assert (first["overall"]["groups"], first["overall"]["repaired"], first["overall"]["repairs"]) == (6, 0.5, 3)
    assert first["config"]["threshold"] == 0.3
    web = get(server, "/v1/audit/segments", segment="request:web").json()["runs"]
    assert [[(s["dimension"], s["segment"], s["repaired"], s["disparity"]["flagged"]) for s in r["segments"]]
            for r in web] == [[], [("request", "web", 1.0, True)]]  # fmt: skip
    assert [r["run_id"] for r in get(server, "/v1/audit/segments", version="v-b").json()["runs"]] == [one]
    assert [r["run_id"] for r in get(server, "/v1/audit/segments", limit=1, offset=1).json()["runs"]] == [one]
    assert get(server, "/v1/audit/segments", since=(T0 + timedelta(hours=12)).isoformat()).json()["total"] == 1
