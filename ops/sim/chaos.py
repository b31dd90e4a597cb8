"""The chaos run: steady simulated traffic through the closed loop while its parts are killed and restarted,
one at a time; then the books are checked.

It starts what ``recast demo`` starts (``ops/sim/loop.py``): the embedded stack with the learner's Celery
worker and beat, ``recast serve`` following the registry, ``recast ingest``. Shoppers (held-out users, cycled)
visit at a steady pace from a thread of their own the whole time. The faults, in turn, each once traffic
has run a while: the API (SIGTERM and restart), the ingest worker (SIGKILL), the Celery worker in the middle
of a refresh (SIGKILL of its process group), the broker (SIGKILL, a few seconds down), Postgres (an
immediate shutdown, a few seconds down). Then the traffic stops and, once the pipeline has drained:

- every outcome the API acknowledged (202) is in Postgres exactly once: *lost* and *double-counted* are 0;
- every list the API served (200) has its impression in Postgres or, still, in the API's spool;
- every model version that served a list, or that ``/v1/admin/model`` reported, is registered and its
  files still verify against the registry;
- the refresh the Celery kill interrupted is marked failed, and a later one finished.

The embedded broker keeps messages in memory only (platform notes), so the broker is killed once the worker
has stored everything acknowledged so far: the fault then tests what the product keeps (the API's spool
while the broker is away, the worker's reconnection), not the durability of Tansu, which production's
Apache Kafka provides.
"""

from __future__ import annotations

import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ops.sim.shoppers import ApiClient, Visit, outcomes_for, segment_of


@dataclass
class Books:
    """What the traffic saw acknowledged, and what was served by which model."""

    acked_events: set[str] = field(default_factory=set)
    served: dict[str, str] = field(default_factory=dict)  # request id -> model version
    answers: Counter = field(default_factory=Counter)  # "recommend 200", "events 202", "recommend no answer", ...
    reported: Counter = field(default_factory=Counter)  # versions /v1/admin/model reported
    lock: threading.Lock = field(default_factory=threading.Lock)


class Traffic(threading.Thread):
    """Visits at ``rate`` per second until stopped; every answer is booked (connection errors too)."""

    def __init__(self, url: str, key: str, visits: list[Visit], rate: float, books: Books, step_s: float = 0.5):
        super().__init__(name="chaos-traffic", daemon=True)
        self.client, self.visits, self.rate, self.books, self.step_s = ApiClient(url, key, 10), visits, rate, books, \
            step_s  # fmt: skip
        self.stop = threading.Event()

    def run(self) -> None:
        rng, n = random.Random(0), 0
        while not self.stop.wait(1.0 / self.rate):
            visit = self.visits[n % len(self.visits)]
            n += 1
            self.visit(Visit(f"{visit.user_id}-{n // len(self.visits)}", visit.history, visit.chosen), rng)

    def call(self, path: str, body) -> tuple[int | None, dict]:
        try:
            return self.client.post(path, body)
        except (urllib.error.URLError, OSError, ValueError):  # refused, reset, timed out: no answer
            return None, {}

    def visit(self, visit: Visit, rng: random.Random) -> None:
        status, body = self.call("/v1/recommend", {"user_id": visit.user_id, "history": visit.history, "k": 10,
                                                   "segment": segment_of(visit)})  # fmt: skip
        with self.books.lock:
            self.books.answers[f"recommend {status or 'no answer'}"] += 1
            if status == 200:
                self.books.served[body["request_id"]] = body["model_version"]
        if status != 200:
            return
        served = [i["item_id"] for i in body["items"]]
        events = outcomes_for(visit, body["request_id"], served, rng, datetime.now(UTC), self.step_s)
        if not events:
            return
        status, _ = self.call("/v1/events", events)
        with self.books.lock:
            self.books.answers[f"events {status or 'no answer'}"] += 1
            if status == 202:
                self.books.acked_events.update(e["event_id"] for e in events)


class Monitor(threading.Thread):
    """Every second: the version ``/v1/admin/model`` reports (what serves at that moment)."""

    def __init__(self, url: str, admin: str, books: Books):
        super().__init__(name="chaos-monitor", daemon=True)
        self.url, self.admin, self.books = url, admin, books
        self.stop = threading.Event()

    def run(self) -> None:
        import json

        while not self.stop.wait(1.0):
            request = urllib.request.Request(f"{self.url}/v1/admin/model",
                                             headers={"Authorization": f"Bearer {self.admin}"})  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=5) as resp:
                    version = json.loads(resp.read())["version"]
            except (OSError, ValueError):
                continue  # the API restarting
            with self.books.lock:
                self.books.reported[version] += 1


@dataclass
class Fault:
    name: str
    how: str
    seconds: float  # from the kill until the part was back
    started: float
    note: str = ""


def new_tag() -> str:
    return uuid.uuid4().hex[:8]


def timed(name: str, how: str, action, note: str = "") -> Fault:
    t0 = time.monotonic()
    action()
    return Fault(name, how, round(time.monotonic() - t0, 2), t0, note)
