"""``LogWatcher``: wait on a log line of a component running in the test's own process."""

from __future__ import annotations

import logging
import threading

from tests.support.wait import wait_for


class LogWatcher(logging.Handler):
    """Collects the records of one logger (and its children) while the ``with`` block runs."""

    def __init__(self, logger: str, level: int = logging.DEBUG):
        super().__init__(level)
        self.logger = logging.getLogger(logger)
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._old_level = self.logger.level

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self._lines.append(record.getMessage())

    def __enter__(self) -> LogWatcher:
        self.logger.addHandler(self)
        if self.logger.getEffectiveLevel() > self.level:
            self.logger.setLevel(self.level)  # a component's INFO lines must reach us whatever the root level
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self._old_level)

    def lines(self, containing: str = "") -> list[str]:
        with self._lock:
            return [line for line in self._lines if containing in line]

    def wait_for(self, containing: str, what: str, count: int = 1, timeout: float = 30.0) -> list[str]:
        """Wait until ``count`` lines contain ``containing``; returns them."""
        return wait_for(lambda: len(self.lines(containing)) >= count and self.lines(containing),
                        f"{what} (a log line of {self.logger.name!r} containing {containing!r}, x{count})",
                        timeout, state=lambda: self.lines()[-5:])  # fmt: skip
