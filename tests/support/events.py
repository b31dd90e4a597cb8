"""Impressions and outcomes at fixed event times (so every run is the same), and their topics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import Impression, Outcome, ServedItem
from schemas.settings import Settings
from tests.support.kafka import produce

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def impression(rid: str, user: str, items: list[str], ts: float) -> Impression:
    served = [ServedItem(item_id=i, score=-float(r), rank=r + 1) for r, i in enumerate(items)]
    return Impression(request_id=rid, user_id=user, history=["h1", "h2"], items=served, model_version="v1", ts=at(ts))


def outcome(eid: str, user: str, item: str, kind: str, ts: float, rid: str | None = None) -> Outcome:
    return Outcome(event_id=eid, user_id=user, item_id=item, type=kind, ts=at(ts), request_id=rid)


def send_events(settings: Settings, events: list[Impression | Outcome]) -> int:
    """Produce events to their topics of ``settings``, keyed by user as the API keys them; acknowledged on return."""
    return produce(settings.kafka_bootstrap, [
        (settings.impressions_topic if isinstance(e, Impression) else settings.outcomes_topic,
         e.user_id.encode(), e.model_dump_json().encode())
        for e in events
    ])  # fmt: skip
