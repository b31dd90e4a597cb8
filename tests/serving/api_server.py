"""A real API process for the tests: uvicorn on 127.0.0.1 in a thread, called over real HTTP."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import torch

from ops.servers import free_port

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


def variant(src: Path, out: Path, data: Path, seed: int) -> Path:
    """A copy of a checkpoint with perturbed weights: another version that ranks differently."""
    from recast.checkpoint import load_checkpoint, save_checkpoint
    from recast.dataset import load_catalog

    ckpt = load_checkpoint(src)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ckpt.model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    keep = {k: v for k, v in ckpt.manifest.items() if k not in ("sha256", "format_version", "policy_config")}
    return save_checkpoint(out, ckpt.model, ckpt.tokenizer, load_catalog(data), ckpt.transition, ckpt.text, keep)
