"""The storefront API's request and response bodies (``POST /v1/recommend``, ``POST /v1/events``).

Requests are validated strictly, like events: ``"k": "10"`` is refused rather than coerced,
and an unknown field is an error, so a storefront's typo fails loudly instead of being ignored.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from schemas.events import Id, Text, clean_text

MAX_K = 50
MAX_EVENTS_PER_CALL = 1000
MAX_EXCLUDE = 500
MAX_ADD = 100  # items per addition: each one's code is chosen against the whole catalog


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


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must hold more than whitespace")
    return value


def empty_string_as_empty_list(value):
    """``items.json`` writes an item without categories as ``""`` (every shipped item does): no categories. Any
    other string is still refused, so a storefront that sends one category unlisted hears of it."""
    return [] if value == "" else value


class NewItem(_Strict):
    """An item added online (``POST /v1/admin/items``, ``recast items add``): the fields of ``items.json``. Its text
    chooses its code and feeds the text scorer, so the title is required and every field is bounded."""

    item_id: Id = Field(description="A new id: an id the catalog holds, retired or not, is refused (409).")
    title: Annotated[Text, Field(min_length=1, max_length=500), AfterValidator(not_blank)]
    # The shipped catalog's longest description is 5,896 characters: a whole items.json entry must fit.
    description: Annotated[Text, Field(max_length=10_000)] = ""
    brand: Annotated[Text, Field(max_length=200)] = ""
    categories: Annotated[
        list[Annotated[Text, Field(min_length=1, max_length=200)]], BeforeValidator(empty_string_as_empty_list)
    ] = Field(default_factory=list, max_length=20)

    def entry(self) -> dict:
        """Its ``items.json`` entry (what the catalog ledger keeps)."""
        return self.model_dump(exclude={"item_id"})


class AddItemsRequest(_Strict):
    items: list[NewItem] = Field(min_length=1, max_length=MAX_ADD, description=f"1-{MAX_ADD} new items.")
    note: Annotated[Text, Field(max_length=2000)] = Field("", description="Why (kept with the catalog version).")
    actor: Annotated[Text, Field(min_length=1, max_length=128)] = Field("admin-api", description="Who asks.")

    @model_validator(mode="after")
    def _distinct(self) -> AddItemsRequest:
        ids = [i.item_id for i in self.items]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"item ids given more than once: {twice[:10]}")
        return self


class ItemsAdded(BaseModel):
    catalog_version: int = Field(description="The catalog version that holds the new items.")
    digest: str = Field(description="sha256 of that version's (item, code, state) set.")
    codes: dict[str, str] = Field(description="Each new item's code (its SID and disambiguation token).")
    served: bool = Field(description="The served model was reloaded over the grown catalog and can return them.")
    model_version: str | None = Field(description="The model serving them (None: no model loaded).")
    error: str | None = Field(None, description="Why the reload failed (the items are recorded; the next swap "
                              "serves them).")  # fmt: skip
