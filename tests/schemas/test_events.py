"""Event payloads: valid ones round-trip through JSON; malformed ones fail with a reason naming the field."""

import json
from datetime import UTC, datetime

import pytest

from schemas.events import (
    IMPRESSION_SCHEMA_VERSION,
    OUTCOME_TYPES,
    SCHEMA_VERSION,
    EventError,
    Impression,
    Outcome,
    ServedItem,
    parse_impression,
    parse_outcome,
)

TS = "2026-11-23T12:00:00+00:00"


def impression(**overrides) -> dict:
    payload = {
        "schema_version": 1,
        "request_id": "r-1",
        "user_id": "u-1",
        "segment": "default",
        "history": ["7", "3"],
        "items": [{"item_id": "42", "score": -0.5, "rank": 1}, {"item_id": "9", "score": -1.25, "rank": 2}],
        "model_version": "sft-abc123",
        "ts": TS,
    }
    return {**payload, **overrides}


def outcome(**overrides) -> dict:
    payload = {
        "schema_version": 1,
        "event_id": "e-1",
        "user_id": "u-1",
        "request_id": "r-1",
        "item_id": "42",
        "type": "purchase",
        "ts": TS,
    }
    return {**payload, **overrides}


def raw(payload: dict) -> bytes:
    return json.dumps(payload).encode()


def test_valid_impression_round_trips():
    event = parse_impression(raw(impression()))
    assert event.items[0] == ServedItem(item_id="42", score=-0.5, rank=1)
    assert event.ts == datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert parse_impression(event.model_dump_json()) == event


def test_impressions_of_schema_1_and_2_are_read_and_2_carries_the_catalog_version():
    old = parse_impression(raw(impression()))
    assert (old.schema_version, old.catalog_version) == (1, None)
    new = parse_impression(raw(impression(schema_version=2, catalog_version=7)))
    assert (new.schema_version, new.catalog_version) == (2, 7)
    built = Impression.model_validate({**impression(ts=datetime.now(UTC), catalog_version=3), "schema_version": 2})
    assert parse_impression(built.model_dump_json()) == built
    # What the service builds is schema 2, with or without a recorded version.
    served = Impression(request_id="r", user_id="u", history=[], items=[ServedItem(item_id="1", score=0.0, rank=1)],
                        model_version="m", ts=datetime.now(UTC))  # fmt: skip
    assert (served.schema_version, served.catalog_version) == (IMPRESSION_SCHEMA_VERSION, None) == (2, None)


@pytest.mark.parametrize("kind", OUTCOME_TYPES)
def test_valid_outcome_round_trips(kind):
    event = parse_outcome(raw(outcome(type=kind)))
    assert event.type == kind and event.schema_version == SCHEMA_VERSION
    assert parse_outcome(event.model_dump_json()) == event


def test_outcome_without_request_id_is_valid():
    payload = outcome()
    del payload["request_id"]
    assert parse_outcome(raw(payload)).request_id is None


def test_built_events_serialise_to_valid_payloads():
    built = Outcome(event_id="e", user_id="u", item_id="i", type="click", ts=datetime.now(UTC))
    assert parse_outcome(built.model_dump_json()) == built
    with pytest.raises(ValueError):
        Impression.model_validate(impression(ts=datetime.now(UTC), items=[]))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (impression(items=[]), "items: List should have at least 1 item"),
        (impression(score_total=1.0), "score_total: Extra inputs are not permitted"),
        (impression(user_id=17), "user_id: Input should be a valid string"),
        (impression(user_id=""), "user_id: String should have at least 1 character"),
        (impression(ts="2026-11-23T12:00:00"), "ts: Input should have timezone info"),
        (impression(schema_version=3), "schema_version: Input should be 1 or 2"),
        (impression(catalog_version=4), "catalog_version: needs schema_version 2"),
        (impression(schema_version=2, catalog_version=0), "catalog_version: Input should be greater than or equal"),
        (impression(schema_version=2, catalog_version="4"), "catalog_version: Input should be a valid integer"),
        (impression(history="7,3"), "history: Input should be a valid array"),
        (impression(items=[{"item_id": "42", "score": "0.5", "rank": 1}]), "items.0.score: Input should be a valid"),
        (impression(items=[{"item_id": "42", "score": 0.5, "rank": 0}]), "items.0.rank: Input should be greater"),
        (
            impression(items=[{"item_id": "1", "score": 0.0, "rank": 1}, {"item_id": "2", "score": 0.0, "rank": 3}]),
            "ranks must be 1..2",
        ),
        (
            impression(items=[{"item_id": "1", "score": 0.0, "rank": 1}, {"item_id": "1", "score": 0.0, "rank": 2}]),
            "served twice",
        ),
    ],
)
def test_malformed_impressions_name_the_problem(payload, reason):
    with pytest.raises(EventError) as err:
        parse_impression(raw(payload))
    assert reason in err.value.reason
    assert "\n" not in err.value.reason  # one line: it goes into dead_letters.reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (outcome(type="view"), "type: Input should be 'click', 'add_to_cart' or 'purchase'"),
        (outcome(event_id=None), "event_id: Input should be a valid string"),
        (outcome(item_id=42), "item_id: Input should be a valid string"),
        (outcome(ts="yesterday"), "ts: Input should be a valid datetime"),
        ({k: v for k, v in outcome().items() if k != "user_id"}, "user_id: Field required"),
    ],
)
def test_malformed_outcomes_name_the_problem(payload, reason):
    with pytest.raises(EventError) as err:
        parse_outcome(raw(payload))
    assert reason in err.value.reason


@pytest.mark.parametrize("garbage", [b"", b"not json", b"\xff\xfe\x00", b"[1, 2]", b"null", b'{"event_id": "e"'])
def test_bytes_that_are_not_an_event_raise_event_error(garbage):
    with pytest.raises(EventError):
        parse_outcome(garbage)
    with pytest.raises(EventError):
        parse_impression(garbage)


def test_events_are_immutable():
    event = parse_outcome(raw(outcome()))
    with pytest.raises(ValueError):
        event.type = "click"
