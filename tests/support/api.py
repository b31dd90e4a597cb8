"""A real API process for the tests: uvicorn on 127.0.0.1 in a thread of the test process, called over real HTTP.

Running in the test's own process lets a test reach the services behind the app (``server.services``)
to force a moment it claims to test, e.g. hold the decode thread so concurrent requests must share a batch.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from ops.stack.servers import create_topics, free_port
from tests.support.wait import wait_for

KEY, ADMIN = "storefront-test-key", "admin-test-token"


def api_settings(stack, data_dir: Path, spool_dir: Path, partitions: int = 2, **fields):
    """Settings for an :class:`ApiServer` on the session stack's broker: impression and outcome topics of its own
    (``partitions`` each), the torch engine, ``KEY`` as the storefront key and ``ADMIN`` as the admin token;
    ``fields`` set or override the rest (a checkpoint, a database, the batcher, other keys)."""
    from schemas.settings import Settings
    from serving.auth import digest

    tag = uuid.uuid4().hex[:8]
    topics = [f"imp-{tag}", f"out-{tag}"]
    kafka = stack.services["kafka"].url
    create_topics(kafka, topics, partitions)
    defaults = dict(data_dir=data_dir, engine="torch", api_keys=digest(KEY), admin_token_sha256=digest(ADMIN),
                    kafka_bootstrap=kafka, impressions_topic=topics[0], outcomes_topic=topics[1], spool_dir=spool_dir)
    return Settings(**{**defaults, **fields})


class ApiServer:
    def __init__(self, settings):
        import uvicorn

        from serving.api.app import create_app

        self.port = free_port()
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="test-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def services(self):
        """The running app's :class:`serving.api.state.Services` (model holder, batcher, publisher, metrics)."""
        return self.app.state.services

    def __enter__(self) -> ApiServer:
        self.thread.start()

        def started() -> bool:
            if not self.thread.is_alive():
                raise RuntimeError("the API failed to start (see the log above)")
            return self.server.started

        wait_for(started, "the API started (uvicorn listening)", timeout=120)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, token: str | None = KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def metrics(self) -> str:
        with self.client(None) as c:
            return c.get("/metrics").text

    @contextmanager
    def decoder_held(self) -> Iterator[None]:
        """Occupy the batcher's one decode thread until the block ends: requests arriving meanwhile queue up
        and must share batches when it is released. (The batcher's executor is private; a test reaches into
        it here, in one place, rather than the product growing a hook for tests.)"""
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            holding.set()
            release.wait(120)

        busy = self.services.batcher._decoder.submit(hold)
        # Only once the thread runs it: until then the hold is itself a task waiting to decode (decodes_waiting).
        wait_for(holding.is_set, "the decode thread held")
        try:
            yield
        finally:
            release.set()
            busy.result(timeout=10)

    def decodes_waiting(self) -> int:
        """Batches handed to the decode thread and not started (behind :meth:`decoder_held`'s hold): a batch
        counted here is closed, so requests arriving now queue for the next one."""
        return self.services.batcher._decoder._work_queue.qsize()

    def on_decoder(self, fn, *args):
        """``fn(*args)`` run on the batcher's one decode thread, between batches: the vLLM engine runs only on the
        thread that started it, so a test that drives an engine directly does it there."""
        return self.services.batcher._decoder.submit(fn, *args).result(timeout=120)


def metric(text: str, name: str) -> float:
    """The sum of a Prometheus sample's values over ``text`` (0 when absent); ``name`` may include labels."""
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))
