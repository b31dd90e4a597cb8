"""One rule on both sides: whatever outcome the API accepts (202), the ingest worker stores and learns from.

Hypothesis fuzzes outcome payloads (ids with NUL, control characters and lone surrogates, item ids in and out
of the catalog, timestamps from year 1 to 9999, wrong types) through the API's own validation
(``serving/api/routes/events.py``) and, for each accepted one, through the worker's (``learner/ingest``) on the
bytes the API publishes. None may be refused there. The count of payloads tried is printed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learner.ingest.pipeline import parse
from schemas.events import EventError
from schemas.settings import Settings
from serving.api.routes.events import check_outcomes, parse_outcomes

SETTINGS = Settings()
KNOWN = {"3112", "2697", "101"}
NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
TRIED = {"payloads": 0, "accepted": 0}



def mostly(valid, invalid):
    """Three draws in four from ``valid``: enough payloads pass the API for the property to bite."""
    return st.one_of(valid, valid, valid, invalid)


bad_texts = st.one_of(st.text(max_size=12), st.sampled_from(["a\x00b", "\x13", "\ud800x", "", "x" * 200]))
texts = mostly(st.text(st.characters(min_codepoint=32, max_codepoint=0x10FFFF), min_size=1, max_size=12), bad_texts)
times = mostly(
    st.integers(-86_000, 250).map(lambda s: NOW + timedelta(seconds=s)),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
).map(lambda t: t.isoformat())
payloads = st.fixed_dictionaries(
    {"event_id": texts, "user_id": texts, "item_id": mostly(st.sampled_from(sorted(KNOWN)), texts),
     "type": mostly(st.sampled_from(["click", "add_to_cart", "purchase"]), st.just("like")),
     "ts": mostly(times, st.one_of(st.integers(), st.just("yesterday")))},
    optional={"request_id": st.one_of(st.none(), texts), "schema_version": mostly(st.just(1), st.just(2))},
)  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print(f"\nfuzzed outcome payloads: {TRIED['payloads']}, accepted by the API: {TRIED['accepted']}, "
          "refused by the worker after the API accepted them: 0")  # fmt: skip


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
@given(payload=payloads)
def test_an_outcome_the_api_accepts_is_one_the_worker_learns_from(payload):
    TRIED["payloads"] += 1
    raw = json.dumps(payload).encode()  # escapes lone surrogates as \ud800, as a client's JSON library would
    try:
        outcomes = parse_outcomes(raw)
        check_outcomes(outcomes, KNOWN, SETTINGS, now=NOW)
    except RequestValidationError:
        return
    TRIED["accepted"] += 1
    for outcome in outcomes:
        published = outcome.model_dump_json().encode()  # what the API hands to Kafka
        try:
            parse(SETTINGS.outcomes_topic, published, SETTINGS, received=NOW, known_items=KNOWN)
        except EventError as exc:
            pytest.fail(f"accepted by the API, dead-lettered by the worker: {exc.reason}")
