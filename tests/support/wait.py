"""``wait_for``: how a test waits. On observable state, never on a fixed sleep, and bounded.

A wait that runs out fails the test with what never happened (and the last state seen, when the
caller describes it), so a red run says which step of a fault scenario did not come about.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_S = 0.05  # how often the state is looked at; the only sleep the tests have


def wait_for(check: Callable[[], T], what: str, timeout: float = 30.0, state: Callable[[], object] | None = None) -> T:
    """Poll ``check`` until it returns something truthy, and return that.

    ``what`` names the awaited state ("both workers own partitions"); ``state``, when given,
    describes what was seen instead, for the failure message."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            seen = f"; last seen: {state()}" if state is not None else ""
            raise AssertionError(f"never happened within {timeout:g} s: {what}{seen}")
        time.sleep(POLL_S)
