"""``POST /v1/recommend``: a storefront asks for a list; the list is served and logged as an impression."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, status

from schemas.api import RecommendedItem, RecommendRequest, RecommendResponse
from serving.api.deps import ServicesDep, Storefront
from serving.api.responses import GUARDED, errors
from serving.batcher import RankRequest

router = APIRouter(prefix="/v1", tags=["recommend"], dependencies=[Storefront])

ERRORS = errors(*GUARDED, 400, 422, 503,
                s422="Invalid body: a wrong type, k outside 1-50, too long a history or exclude list, or unknown "
                "item ids")  # fmt: skip
SHOWN_UNKNOWN = 10  # unknown ids named in a 422: enough to find the mistake, never the whole history back


@router.post("/recommend", response_model=RecommendResponse, responses=ERRORS, summary="Recommend k items")
async def recommend(body: RecommendRequest, services: ServicesDep) -> RecommendResponse:
    cap = services.settings.max_request_history
    if len(body.history) > cap:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"history has {len(body.history)} items; at most {cap} are accepted")  # fmt: skip
    for field, ids in (("history", body.history), ("exclude", body.exclude)):
        unknown = services.catalog.unknown(ids)
        if unknown:
            shown = list(dict.fromkeys(unknown))  # each once, in order
            detail = {"message": f"{len(shown)} unknown item id(s) in {field}",
                      "unknown_item_ids": [i[:64] for i in shown[:SHOWN_UNKNOWN]]}  # fmt: skip
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)
    if not services.holder.loaded:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no model loaded yet", {"Retry-After": "5"})
    index = services.catalog.index
    positions = [index[i] for i in body.history]
    excluded = set(positions) if body.exclude_history else set()
    ranked = await services.batcher.rank(RankRequest(positions, body.k, excluded, {index[i] for i in body.exclude}))
    model = ranked.model
    # The catalog as it is now: an item retired while this request's batch decoded is dropped here, so no list
    # built after a retirement returns holds the item. The batch already removed what was retired when it began.
    catalog = services.live.current
    items = [
        RecommendedItem(item_id=model.item_ids[p], title=model.titles[p], sid=model.sids[p], score=s, rank=r)
        for r, (p, s) in enumerate((ps for ps in ranked.items if ps[0] not in catalog.retired_positions), 1)
    ]
    # The list's own id (the impression's dedup key), never the client's X-Request-ID: a client that reuses its
    # header on a retry would otherwise make the second list's impression a duplicate of the first.
    request_id = uuid.uuid4().hex
    services.publish_impression(request_id, body.user_id, body.segment, body.history, items, model.version,
                                catalog.version)  # fmt: skip
    return RecommendResponse(request_id=request_id, model_version=model.version, items=items,
                             catalog_version=catalog.version)  # fmt: skip
