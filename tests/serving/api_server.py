"""A real API process for the tests: uvicorn on 127.0.0.1 in a thread, called over real HTTP."""

from __future__ import annotations

import threading
import time

import httpx

from ops.stack.servers import free_port

KEY, ADMIN = "storefront-test-key", "admin-test-token"


class ApiServer:
    def __init__(self, settings):
        import uvicorn

        from serving.api.app import create_app

        self.port = free_port()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False)  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="test-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the API failed to start (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError("the API did not start in 120 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, token: str | None = KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)
