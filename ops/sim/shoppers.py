"""The traffic simulator: shoppers from a split file ask the service for lists and act on them.

Each row of the split (a user, their history, the item they really chose next) becomes one
visit: ``POST /v1/recommend`` with the history, then outcomes through ``POST /v1/events``:

- the chosen item on the list: a click (90%), then an add-to-cart (50% of clicks), then a
  purchase (50% of those), all naming the served list's request id;
- the chosen item not on the list: half the time the shopper finds it anyway, an off-list
  (organic) click and, for some, a purchase;
- now and then a click on some other served item (browsing).

So rewards follow the data's real next items, and lists that missed leave all-zero groups
with a known positive elsewhere: what ReCast repairs. Only 127.0.0.1 is targeted; the run ends
after the last row.
"""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse


@dataclass(frozen=True)
class Visit:
    user_id: str
    history: list[str]
    chosen: str  # the item the user went on to engage with (the row's target)


@dataclass
class SimulationStats:
    visits: int = 0
    hits: int = 0  # the chosen item was on the served list
    outcomes: Counter = field(default_factory=Counter)  # "click" / "add_to_cart" / "purchase" / "organic"
    errors: Counter = field(default_factory=Counter)
    versions: Counter = field(default_factory=Counter)  # model version -> lists it served
    request_ids: list[str] = field(default_factory=list)
    hit_by_visit: list[bool | None] = field(default_factory=list)  # None: the visit got no list

    def summary(self) -> dict:
        return {"visits": self.visits, "hit_rate@k": round(self.hits / self.visits, 4) if self.visits else 0.0,
                "outcomes": dict(self.outcomes), "errors": dict(self.errors),
                "versions": dict(self.versions)}  # fmt: skip


class ApiClient:
    """A tiny JSON client for the service on 127.0.0.1 (stdlib only: the simulator is light)."""

    def __init__(self, url: str, key: str, timeout: float = 30.0):
        host = urlparse(url).hostname
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the simulator targets 127.0.0.1 only, not {host!r}")
        self.url, self.key, self.timeout = url.rstrip("/"), key, timeout

    def post(self, path: str, body) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


def segment_of(visit: Visit) -> str | None:
    """The segment the storefront sends for a shopper: its channel, fixed per user (two in five on the web, two
    in five in the app); one storefront in five sends none, which the audit reports as ``unknown``."""
    bucket = zlib.crc32(visit.user_id.encode()) % 5
    return None if bucket == 0 else "web" if bucket <= 2 else "app"


def outcomes_for(visit: Visit, request_id: str, served: list[str], rng: random.Random, t0: datetime,
                 step_s: float = 2.0) -> list[dict]:  # fmt: skip
    """What the shopper does with the list (see the module docstring), as outcome payloads."""
    acts: list[tuple[str, str, str | None]] = []  # (item, type, request id or None)
    if visit.chosen in served:
        if rng.random() < 0.9:
            acts.append((visit.chosen, "click", request_id))
            if rng.random() < 0.5:
                acts.append((visit.chosen, "add_to_cart", request_id))
                if rng.random() < 0.5:
                    acts.append((visit.chosen, "purchase", request_id))
    elif rng.random() < 0.5:
        acts.append((visit.chosen, "click", None))
        if rng.random() < 0.3:
            acts.append((visit.chosen, "purchase", None))
    if served and rng.random() < 0.2:
        acts.append((rng.choice(served), "click", request_id))
    return [
        {"event_id": uuid.uuid4().hex, "user_id": visit.user_id, "request_id": rid, "item_id": item, "type": kind,
         "ts": (t0 + timedelta(seconds=step_s * (n + 1))).isoformat()}
        for n, (item, kind, rid) in enumerate(acts)
    ]  # fmt: skip


def simulate(
    client: ApiClient, visits: Iterable[Visit], k: int = 10, seed: int = 0, on_visit: Callable[[], None] | None = None,
    step_s: float = 2.0,
) -> SimulationStats:
    """Every visit in order; ``step_s``: event-time seconds between one shopper's successive actions."""
    rng, stats = random.Random(seed), SimulationStats()
    for visit in visits:
        stats.visits += 1
        request = {"user_id": visit.user_id, "history": visit.history, "k": k}
        if (segment := segment_of(visit)) is not None:
            request["segment"] = segment
        status, body = client.post("/v1/recommend", request)
        if status != 200:
            stats.errors[f"recommend {status}"] += 1
            stats.hit_by_visit.append(None)
            if on_visit is not None:
                on_visit()
            continue
        served = [item["item_id"] for item in body["items"]]
        stats.hits += visit.chosen in served
        stats.hit_by_visit.append(visit.chosen in served)
        stats.versions[body["model_version"]] += 1
        stats.request_ids.append(body["request_id"])
        events = outcomes_for(visit, body["request_id"], served, rng, datetime.now(UTC), step_s)
        if events:
            status, _ = client.post("/v1/events", events)
            if status != 202:
                stats.errors[f"events {status}"] += 1
            for e in events:
                stats.outcomes["organic" if e["request_id"] is None else e["type"]] += 1
        if on_visit is not None:
            on_visit()
    return stats
