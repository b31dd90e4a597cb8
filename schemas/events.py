"""Event payloads on the wire: what the service emits (``Impression``) and what shoppers do (``Outcome``).

Both travel through Kafka as UTF-8 JSON and are validated strictly on the way in: an
unknown field, a missing field, a string where a number belongs or a naive timestamp
is refused, because a silently coerced event would corrupt rewards without a trace.
:func:`parse_impression` and :func:`parse_outcome` turn raw bytes into an event or an
:class:`EventError` whose one-line reason is what the dead-letter table stores.

Every payload carries ``schema_version``. A reader accepts exactly the versions it
knows; a new version is a new literal, never a reinterpretation. Outcomes are at version 1.
Impressions are at version 2, which adds ``catalog_version`` (the catalog version the list
was served under); a version 1 impression, without it, is still read.

>>> raw = b'{"event_id": "e1", "user_id": "u1", "item_id": "42", "type": "click", "ts": "2026-01-01T00:00:00Z"}'
>>> parse_outcome(raw).type
'click'
>>> parse_outcome(b'{"schema_version": 1, "event_id": "e1", "user_id": "u1", "item_id": 42}')
Traceback (most recent call last):
...
schemas.events.EventError: item_id: Input should be a valid string; type: Field required; ts: Field required
"""

from __future__ import annotations

import re
from collections.abc import Container
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, TypeVar, get_args

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 1  # outcomes
IMPRESSION_SCHEMA_VERSION = 2  # 2 adds catalog_version
OutcomeType = Literal["click", "add_to_cart", "purchase"]
OUTCOME_TYPES: tuple[str, ...] = get_args(OutcomeType)



_UNSTORABLE = re.compile("[\x00-\x1f\ud800-\udfff]")


def clean_text(value: str) -> str:
    r"""Refuse what no store downstream can hold: U+0000 (Postgres text and JSONB refuse it, so such an event
    would be accepted and then dead-lettered), other C0 control characters, and lone surrogates (they cannot
    be encoded as UTF-8 at all, so even the error that names them would fail).

    >>> clean_text("shop-42")
    'shop-42'
    >>> clean_text("a\x00b")
    Traceback (most recent call last):
    ...
    ValueError: contains the control character U+0000
    """
    bad = _UNSTORABLE.search(value)  # one regex scan: this runs on every id of every event ingested
    if bad is not None:
        ch = bad.group()
        raise ValueError(f"contains {'a lone surrogate' if ch >= ' ' else 'the control character'} U+{ord(ch):04X}")
    return value


# Free text that travels to Kafka and Postgres: printable, encodable.
Text = Annotated[str, AfterValidator(clean_text)]
# Ids are opaque strings from other systems; the bounds only stop garbage (empty ids, megabyte keys).
Id = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(clean_text)]


class _Event(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ServedItem(_Event):
    item_id: Id
    score: float = Field(allow_inf_nan=False)
    rank: int = Field(ge=1, description="1 = shown first.")


class Impression(_Event):
    """One served list: the context the policy saw and the items it ranked, in order."""

    schema_version: Literal[1, 2] = IMPRESSION_SCHEMA_VERSION
    request_id: Id = Field(description="Unique per served list; the impression's dedup key.")
    user_id: Id
    segment: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(clean_text)] = "default"
    history: list[Id] = Field(max_length=1000, description="The user's recent items, oldest first.")
    items: list[ServedItem] = Field(min_length=1, max_length=1000)
    model_version: Id
    ts: AwareDatetime
    catalog_version: int | None = Field(None, ge=1, description="The catalog version the list was served under "
                                        "(schema 2; None where the service knew no recorded version).")  # fmt: skip

    @model_validator(mode="after")
    def _ranks_are_a_list(self) -> Impression:
        if self.schema_version == 1 and self.catalog_version is not None:
            raise ValueError("catalog_version: needs schema_version 2")
        # Rewards are stored per served position, so ranks must be exactly 1..n and items distinct.
        n, ranks = len(self.items), {item.rank for item in self.items}  # a set: this runs for every event ingested
        if len(ranks) != n or min(ranks) != 1 or max(ranks) != n:
            got = sorted(item.rank for item in self.items)
            raise ValueError(f"items: ranks must be 1..{n} without gaps or repeats, got {got}")
        ids = [item.item_id for item in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("items: an item_id is served twice in one list")
        return self


class Outcome(_Event):
    """One thing a shopper did with an item; ``request_id`` is set when the storefront knows the list."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: Id = Field(description="Unique per outcome; the outcome's dedup key.")
    user_id: Id
    request_id: Id | None = None
    item_id: Id
    type: OutcomeType
    ts: AwareDatetime


# Nothing any storefront stamps is older than this; a timestamp before it is a bug (a zero, seconds read as ms).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


def event_problem(event: Impression | Outcome, received: datetime, known_items: Container[str] | None = None,
                  max_age_s: int | None = None, max_skew_s: int = 300) -> str | None:  # fmt: skip
    """Why a well-formed event would not be learned from, or None: the one rule the API (before it answers
    2xx) and the ingest worker (before it stores) both apply, so an accepted event is never dead-lettered.

    ``received``: when it was received (the API's clock; the Kafka record's timestamp in the worker, so a
    replay judges the same). ``known_items``: the catalog's item ids (an outcome on an unknown item can
    credit no list and teach nothing). ``max_age_s``: how old it may be (the API's bound; the worker cannot
    judge age, since a record replayed from the API's spool is received late).

    >>> o = Outcome(event_id="e", user_id="u", item_id="7", type="click", ts=datetime(2026, 1, 1, tzinfo=UTC))
    >>> event_problem(o, datetime(2026, 1, 1, tzinfo=UTC), {"7"}) is None
    True
    >>> event_problem(o, datetime(2026, 1, 1, tzinfo=UTC), {"8"})
    "item_id: '7' is not in the catalog"
    >>> event_problem(o, datetime(2025, 12, 31, tzinfo=UTC))
    'ts: 2026-01-01T00:00:00+00:00 is more than 300 s ahead of the time it was received'
    """
    ts = event.ts
    if ts < EARLIEST:
        return f"ts: {ts.isoformat()} is before {EARLIEST.year}"
    if ts > received + timedelta(seconds=max_skew_s):
        return f"ts: {ts.isoformat()} is more than {max_skew_s} s ahead of the time it was received"
    if max_age_s is not None and ts < received - timedelta(seconds=max_age_s):
        return f"ts: {ts.isoformat()} is more than {max_age_s} s old"
    if known_items is not None:
        items = [event.item_id] if isinstance(event, Outcome) else [i.item_id for i in event.items]
        unknown = [i for i in items if i not in known_items]
        if unknown:
            shown = ", ".join(repr(i[:32]) for i in unknown[:3])
            return f"item_id: {shown} {'is' if len(unknown) == 1 else 'are'} not in the catalog"
    return None


class EventError(ValueError):
    """A payload that is not a valid event; ``reason`` is one line naming each bad field."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def describe(exc: ValidationError) -> str:
    """``field.path: message`` for every error, joined on one line (it goes into a table column)."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    return "; ".join(parts)


E = TypeVar("E", bound=_Event)


def _parse(model: type[E], raw: bytes | str) -> E:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise EventError(describe(exc)) from None


def parse_impression(raw: bytes | str) -> Impression:
    return _parse(Impression, raw)


def parse_outcome(raw: bytes | str) -> Outcome:
    return _parse(Outcome, raw)
