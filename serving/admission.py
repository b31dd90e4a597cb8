"""Admission control: who may be served now.

- :class:`Overloaded`: the decoder's queue is full (``RECAST_QUEUE_MAX``); the request is shed with 503
  and a ``Retry-After`` of about the time the queue needs to drain, instead of waiting behind it.
- :class:`RateLimiter`: per storefront key (``RECAST_RATE_LIMIT``, ``RECAST_RATE_LIMITS``), a sliding-window
  counter from the `limits` library (the one slowapi and Flask-Limiter use); over the limit is 429 with
  ``Retry-After`` until the window lets the key in again.
"""

from __future__ import annotations

import time


class Overloaded(Exception):
    """The decoder's queue is full; ``retry_after`` is seconds until it has likely drained."""

    def __init__(self, queued: int, retry_after: float):
        super().__init__(f"the decoder's queue is full ({queued} requests waiting); retry later")
        self.queued, self.retry_after = queued, retry_after


class RateLimiter:
    """``hit(name)``: None when the key may go on, else the seconds until it may (per key name)."""

    def __init__(self, default: str = "", overrides: dict[str, str] | None = None):
        from limits import parse
        from limits.storage import MemoryStorage
        from limits.strategies import SlidingWindowCounterRateLimiter

        # parse() refuses a malformed rate with a message naming it: a typo stops the start, never passes silently.
        self.default = parse(default) if default else None
        self.overrides = {name: parse(rate) for name, rate in (overrides or {}).items()}
        self.limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    @property
    def active(self) -> bool:
        return self.default is not None or bool(self.overrides)

    def hit(self, name: str) -> float | None:
        item = self.overrides.get(name, self.default)
        if item is None or self.limiter.hit(item, name):
            return None
        stats = self.limiter.get_window_stats(item, name)
        return max(0.0, stats.reset_time - time.time())
