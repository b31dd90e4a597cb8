"""Event payloads on the wire: what the service emits (``Impression``) and what shoppers do (``Outcome``).

Both travel through Kafka as UTF-8 JSON and are validated strictly on the way in: an
unknown field, a missing field, a string where a number belongs or a naive timestamp
is refused, because a silently coerced event would corrupt rewards without a trace.
:func:`parse_impression` and :func:`parse_outcome` turn raw bytes into an event or an
:class:`EventError` whose one-line reason is what the dead-letter table stores.

Every payload carries ``schema_version``. A reader accepts exactly the versions it
knows (``Literal[1]`` today); a new version is a new literal, never a reinterpretation.

>>> raw = b'{"event_id": "e1", "user_id": "u1", "item_id": "42", "type": "click", "ts": "2026-01-01T00:00:00Z"}'
>>> parse_outcome(raw).type
'click'
>>> parse_outcome(b'{"schema_version": 1, "event_id": "e1", "user_id": "u1", "item_id": 42}')
Traceback (most recent call last):
...
schemas.events.EventError: item_id: Input should be a valid string; type: Field required; ts: Field required
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 1
OutcomeType = Literal["click", "add_to_cart", "purchase"]
OUTCOME_TYPES: tuple[str, ...] = get_args(OutcomeType)

# Ids are opaque strings from other systems; the bounds only stop garbage (empty ids, megabyte keys).
Id = Annotated[str, Field(min_length=1, max_length=128)]


class _Event(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ServedItem(_Event):
    item_id: Id
    score: float = Field(allow_inf_nan=False)
    rank: int = Field(ge=1, description="1 = shown first.")


class Impression(_Event):
    """One served list: the context the policy saw and the items it ranked, in order."""

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: Id = Field(description="Unique per served list; the impression's dedup key.")
    user_id: Id
    segment: Annotated[str, Field(min_length=1, max_length=64)] = "default"
    history: list[Id] = Field(max_length=1000, description="The user's recent items, oldest first.")
    items: list[ServedItem] = Field(min_length=1, max_length=1000)
    model_version: Id
    ts: AwareDatetime

    @model_validator(mode="after")
    def _ranks_are_a_list(self) -> Impression:
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
