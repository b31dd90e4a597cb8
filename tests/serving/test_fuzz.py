"""No input makes the API answer 5xx: schemathesis fuzzes every route of the served OpenAPI document with no
key, a storefront key and the admin token, against a real server (uvicorn, the torch engine, Tansu, Postgres).

Each answer must also be one the document lists for that route, in the documented media type and shape.
The example count per route and caller is bounded (``FUZZ_EXAMPLES``, 40 by default) so ``make test`` stays
short; RELIABILITY.md's figures come from a larger run of this same module. The counts are printed and, with
``FUZZ_REPORT=<file>``, written as JSON.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serving.auth import digest
from tests.support.api import ADMIN, KEY, ApiServer, api_settings
from tests.support.databases import fresh_database

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
CALLERS = {"no key": None, "storefront key": KEY, "admin token": ADMIN}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
TRIED: Counter = Counter()  # (route, caller, status class) -> cases


@pytest.fixture(scope="module")
def fuzz_server(stack, tmp_path_factory, shipped_data, tiny_checkpoint):
    with fresh_database(stack, "fuzz") as db:
        config = api_settings(stack, shipped_data, tmp_path_factory.mktemp("spool"), checkpoint=tiny_checkpoint,
                              beam_width=10, batch_max_size=8, api_keys=f"fuzzer:{digest(KEY)}", database_url=db,
                              registry_poll_s=0, max_body_bytes=65_536)  # fmt: skip
        with ApiServer(config) as server:
            yield server
    _report()


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


def fuzz(operation, mode: GenerationMode, headers: dict, caller: str, failures: list) -> None:
    """``EXAMPLES`` generated cases of one operation, each called over HTTP and checked."""

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)  # fmt: skip
    def one(case):
        # The swap route loads whatever path it is given: the fuzzer must not make the server read its own disk.
        if case.path == "/v1/admin/model" and case.method == "POST" and isinstance(case.body, dict):
            case.body["path"] = "/nonexistent/" + str(case.body.get("path", ""))[:20]
        response = case.call(headers=headers, timeout=60)
        TRIED[(f"{case.method} {case.path}", caller, f"{response.status_code // 100}xx")] += 1
        try:
            assert response.status_code < 500, (response.status_code, response.text[:300])
            case.validate_response(response, checks=CHECKS, headers=headers)
        except Exception as exc:  # collected: one run reports every route that failed, not only the first
            failures.append(f"{case.method} {case.path} as {caller} ({mode}): {str(exc)[:400]}")

    try:
        one()
    except Unsatisfiable:  # a route with nothing to get wrong (no parameters, no body) has no negative cases
        assert mode is GenerationMode.NEGATIVE, f"no positive case could be made for {operation.label}"


@pytest.mark.parametrize("caller", list(CALLERS))
def test_no_input_gets_a_5xx(api_schema, caller):
    token = CALLERS[caller]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8, "every route should be in the document"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, headers, caller, failures)
    assert not failures, "\n".join(dict.fromkeys(failures))


def _report() -> None:
    if not TRIED:
        return
    rows: dict = {}
    for (route, caller, status), n in sorted(TRIED.items()):
        rows.setdefault(route, {}).setdefault(caller, {})[status] = n
    print("\nschemathesis cases per route and caller (by status class):")
    for route, callers in rows.items():
        print(f"  {route:<26} " + "; ".join(f"{c}: {dict(s)}" for c, s in callers.items()))
    if os.environ.get("FUZZ_REPORT"):
        with open(os.environ["FUZZ_REPORT"], "w") as f:
            json.dump({"examples": EXAMPLES, "routes": rows, "total": sum(TRIED.values()),
                       "5xx": sum(n for (_, _, s), n in TRIED.items() if s == "5xx")}, f, indent=2)  # fmt: skip
