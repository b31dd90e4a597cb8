"""Retiring an item while clients keep asking for lists (the driver the torch and vLLM engine tests share), and a
checkpoint that says it was trained after a retirement."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from recast.catalog_version import CatalogVersion
from recast.checkpoint import read_manifest
from tests.support.api import ADMIN, ApiServer
from tests.support.wait import wait_for


@dataclass(frozen=True)
class Answer:
    sent: float  # time.monotonic() when the request was sent
    received: float
    status: int
    k: int
    items: tuple[str, ...]
    catalog_version: int | None


@dataclass
class Load:
    """What clients were answered around one retirement."""

    answers: list[Answer] = field(default_factory=list)
    posted: float = 0.0  # when the retire call was sent ...
    returned: float = 0.0  # ... and when it returned
    response: dict | None = None

    def sent_after_return(self) -> list[Answer]:
        return [a for a in self.answers if a.sent > self.returned]

    def served_before(self, item: str) -> int:
        return sum(item in a.items for a in self.answers if a.received < self.posted)


def most_served(server: ApiServer, bodies: list[dict], skip: set[str] = frozenset()) -> str:
    """The item the most of these lists hold (ties: the first met), leaving out ``skip``."""
    seen: Counter = Counter()
    with server.client() as c:
        for body in bodies:
            r = c.post("/v1/recommend", json=body)
            assert r.status_code == 200, r.text
            seen.update(i["item_id"] for i in r.json()["items"] if i["item_id"] not in skip)
    return seen.most_common(1)[0][0]


def retire_under_load(server: ApiServer, bodies: list[dict], item: str, clients: int = 4, after: int = 40,
                      reason: str = "out_of_stock", timeout: float = 300) -> Load:  # fmt: skip
    """``clients`` threads ask for ``bodies`` in turn, without pause. Once the item was served under that load and
    requests are in flight in the service, the item is retired through the admin API. The load goes on until
    ``after`` requests sent after the retire call returned have been answered."""
    load, lock, stop = Load(), threading.Lock(), threading.Event()

    def client(n: int) -> None:
        with server.client() as c:
            turn = n
            while not stop.is_set():
                body = bodies[turn % len(bodies)]
                turn += clients
                sent = time.monotonic()
                r = c.post("/v1/recommend", json=body)
                received = time.monotonic()
                ok = r.status_code == 200
                items = tuple(i["item_id"] for i in r.json()["items"]) if ok else ()
                answer = Answer(sent, received, r.status_code, body["k"], items,
                                r.json()["catalog_version"] if ok else None)  # fmt: skip
                with lock:
                    load.answers.append(answer)

    def snapshot() -> list[Answer]:
        with lock:
            return list(load.answers)

    threads = [threading.Thread(target=client, args=(n,), name=f"load-{n}", daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: sum(item in a.items for a in snapshot()) >= 3 and server.services.batcher.depth() > 0,
                 f"item {item} served under load with requests in flight", timeout=timeout,
                 state=lambda: f"{len(snapshot())} answers")  # fmt: skip
        with server.client(ADMIN) as admin:
            load.posted = time.monotonic()
            r = admin.post("/v1/admin/items/retire", json={"item_ids": [item], "reason": reason, "note": "test"})
            load.returned = time.monotonic()
        assert r.status_code == 200, r.text
        load.response = r.json()
        wait_for(lambda: sum(a.sent > load.returned for a in snapshot()) >= after,
                 f"{after} requests sent after the retire call returned, answered", timeout=timeout,
                 state=lambda: f"{sum(a.sent > load.returned for a in snapshot())} answered")  # fmt: skip
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    load.answers = snapshot()
    return load


def trained_after_retiring(tiny_checkpoint, out, item: str, version: int):
    """A copy of the checkpoint whose manifest says it was trained on a catalog version with ``item`` retired."""
    shutil.copytree(tiny_checkpoint, out)
    manifest = read_manifest(out)
    codes = {item_id: "".join(code) for item_id, code in json.loads((out / "item_codes.json").read_text())}
    manifest["catalog"] = CatalogVersion(codes, {item: "retired"}, version).manifest_entry()
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out
