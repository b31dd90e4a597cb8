"""``POST /v1/events``: storefront outcomes (one, or a batch) onto the outcomes topic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import Field, TypeAdapter, ValidationError

from schemas.api import MAX_EVENTS_PER_CALL, EventsAccepted
from schemas.events import Outcome, event_problem
from serving.api.deps import ServicesDep, Storefront
from serving.api.responses import GUARDED, errors

router = APIRouter(prefix="/v1", tags=["events"], dependencies=[Storefront])

_BATCH = TypeAdapter(Annotated[list[Outcome], Field(min_length=1, max_length=MAX_EVENTS_PER_CALL)])
_ONE = Outcome.model_json_schema()  # flat: no nested models, so no $defs to carry
_SCHEMA = {"oneOf": [_ONE, {"type": "array", "items": _ONE, "minItems": 1, "maxItems": MAX_EVENTS_PER_CALL}]}


def check_outcomes(outcomes: list[Outcome], known_items, settings, now: datetime | None = None) -> None:
    """The rule the ingest worker applies too (:func:`schemas.events.event_problem`): a 202 is only given to
    outcomes it will learn from. One bad outcome refuses the whole call (nothing is published)."""
    now, problems = now or datetime.now(UTC), []
    for n, outcome in enumerate(outcomes):
        problem = event_problem(outcome, now, known_items, settings.event_max_age_s, settings.event_max_skew_s)
        if problem is not None:
            field, _, msg = problem.partition(": ")
            problems.append({"loc": ("body", n, field), "msg": msg, "type": "value_error"})
    if problems:
        raise RequestValidationError(problems)


def parse_outcomes(raw: bytes) -> list[Outcome]:
    """The body as outcomes, validated from the JSON text itself: events are strict (an aware ISO 8601
    ``ts``, no coercion), and strict validation of already-decoded JSON would refuse every timestamp string.
    A list is a batch, anything else one outcome, so an error names the fields of the form that was sent."""
    try:
        if raw.lstrip()[:1] == b"[":
            return _BATCH.validate_json(raw)
        return [Outcome.model_validate_json(raw)]
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventsAccepted,
    responses=errors(*GUARDED, 422, s422="An invalid outcome: malformed, on an item outside the catalog, or stamped "
                     "too far in the past or the future"),
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _SCHEMA}}}},
    summary="Record outcomes: click, add_to_cart, purchase",
)
async def events(request: Request, services: ServicesDep) -> EventsAccepted:
    """One outcome or a list of up to 1000. Accepted means handed to the event stream: published to Kafka,
    or spooled on disk until Kafka is back. ``event_id`` makes a retried call harmless (the ingestion
    deduplicates on it)."""
    outcomes = parse_outcomes(await request.body())
    check_outcomes(outcomes, services.catalog.index, services.settings)
    topic = services.settings.outcomes_topic
    for outcome in outcomes:
        services.publisher.publish(topic, outcome.user_id, outcome.model_dump_json())
    services.metrics.events.inc(len(outcomes))
    return EventsAccepted(accepted=len(outcomes))
