"""Every experiment's ``main`` sets the process's torch threads, as a command does; the suite puts them back after
each test, so later tests see the count they started with (vLLM's CPU attention checks it against its own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
