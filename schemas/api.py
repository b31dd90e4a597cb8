"""The storefront API's request and response bodies (``POST /v1/recommend``, ``POST /v1/events``).

Requests are validated strictly, like events: ``"k": "10"`` is refused rather than coerced,
and an unknown field is an error, so a storefront's typo fails loudly instead of being ignored.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from schemas.events import Id, clean_text

MAX_K = 50
MAX_EVENTS_PER_CALL = 1000
MAX_EXCLUDE = 500


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class RecommendRequest(_Strict):
    user_id: Id
    history: list[Id] = Field(
        default_factory=list,
        description="The user's recent item ids, oldest first; may be empty. The cap is the service's "
        "`max_request_history` setting (200 by default); only the most recent items reach the model.",
    )
    k: int = Field(10, ge=1, le=MAX_K, description=f"How many items to return (1-{MAX_K}).")
    segment: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(clean_text)] = Field(
        "default", description="Customer segment, carried into the impression for per-segment audits."
    )
    exclude_history: bool = Field(False, description="Leave out items already in the history.")
    exclude: list[Id] = Field(
        default_factory=list, max_length=MAX_EXCLUDE,
        description=f"Item ids that must not be recommended (at most {MAX_EXCLUDE}): they are not candidates at all, "
        "so the list still has k items. Unknown ids are refused (422), like the history's. Unlike "
        "`exclude_history`, which only hides history items from the ranked list, excluded items also leave the "
        "policy's beam, and the scores are those of a catalog without them.",
    )  # fmt: skip


class RecommendedItem(BaseModel):
    item_id: str
    title: str
    sid: str = Field(description="The item's semantic ID, e.g. <a_12><b_3><c_40>.")
    score: float = Field(description="The served (fused) score; higher is better.")
    rank: int = Field(ge=1)


class RecommendResponse(BaseModel):
    request_id: str = Field(description="Identifies this list; send it back with outcomes on its items.")
    model_version: str
    items: list[RecommendedItem]
    catalog_version: int | None = Field(None, description="The catalog version the list was served under (None: "
                                        "the service has no recorded version yet).")  # fmt: skip


class EventsAccepted(BaseModel):
    accepted: int = Field(
        description="Outcomes handed to the event stream (published, or spooled until Kafka is back)."
    )


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where: 'body', then the field path.")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error the API answers: what is wrong, never the input echoed back (a body of megabytes, or bytes
    that cannot even be encoded, would make the error itself fail)."""

    detail: str | list[FieldError] | dict = Field(description="The problem: a sentence, the invalid fields, or "
                                                  "a structured reason.")  # fmt: skip
    request_id: str | None = Field(None, description="The request's id (also in the X-Request-ID header).")
