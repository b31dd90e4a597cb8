"""Hot-swap: load the next model beside the serving one, then replace the reference.

:meth:`ModelHolder.swap` verifies (the registry's manifest hash, then every file against
the manifest), loads, builds the engine and warms it while the old model keeps serving;
only a model that passed all of that becomes ``current``, in one reference assignment.
Batches read ``current`` once, so a batch in flight finishes on the model it started on,
and the old model is closed only after such batches (``retire``).

:class:`RegistryWatcher` polls the ``model_registry`` table for the newest ``active``
row and swaps when that row *changes*: a swap an operator made through the admin route
stands until the registry names another model, and a checkpoint that failed to load is
not reloaded every poll (register it again to retry).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recast.catalog import Catalog
from schemas.settings import Settings
from serving.served_model import ModelLoadError, ServedModel, load_served_model

log = logging.getLogger("recast.hotswap")


@dataclass(frozen=True)
class SwapResult:
    ok: bool
    version: str | None  # the serving version afterwards
    previous: str | None
    seconds: float
    error: str | None = None


class ModelHolder:
    def __init__(self, catalog: Catalog, settings: Settings, retire: Callable[[ServedModel], None] | None = None):
        self.catalog, self.settings = catalog, settings
        self.retire = retire or (lambda model: model.close())
        self._current: ServedModel | None = None
        self._swap_lock = threading.Lock()  # one load at a time: two would only compete for the cores
        # Held across "read the registry, swap" by the watcher and across "swap, write the registry" by an admin
        # rollback, so the watcher never reads the registry between a rollback's swap and its commit.
        self.registry_lock = threading.Lock()
        self.swaps = {"ok": 0, "refused": 0}
        self.last: SwapResult | None = None

    @property
    def current(self) -> ServedModel:
        model = self._current
        if model is None:
            raise RuntimeError("no model loaded yet")
        return model

    @property
    def loaded(self) -> bool:
        return self._current is not None

    def get(self) -> ServedModel | None:
        return self._current

    def state(self) -> dict:
        """What is served, on which engine, and the swaps so far (for metrics)."""
        model = self._current
        return {
            "version": model.version if model else None,
            "engine": model.engine.name if model else self.settings.engine,
            "swaps": dict(self.swaps),
        }

    def swap(self, path: Path | str, expected_sha256: str | None = None) -> SwapResult:
        """Load ``path`` and serve it; on any failure keep serving the current model and say why."""
        with self._swap_lock:
            t0 = time.monotonic()
            previous = self._current
            old_version = previous.version if previous else None
            try:
                model = load_served_model(path, self.catalog, self.settings, expected_sha256)
            except ModelLoadError as exc:
                self.swaps["refused"] += 1
                self.last = SwapResult(False, old_version, old_version, time.monotonic() - t0, str(exc))
                log.error("swap to %s refused, %s keeps serving: %s", path, old_version, exc)
                return self.last
            self._current = model  # the swap: one reference assignment
            if previous is not None:
                self.retire(previous)
            self.swaps["ok"] += 1
            self.last = SwapResult(True, model.version, old_version, time.monotonic() - t0)
            log.info("now serving %s (was %s); swap took %.2f s", model.version, old_version, self.last.seconds)
            return self.last


class RegistryWatcher(threading.Thread):
    """Every ``poll_s``: the newest ``active`` registry row; a new one is swapped in unless already served."""

    def __init__(self, holder: ModelHolder, database_url: str, poll_s: float):
        super().__init__(name="recast-registry-watcher", daemon=True)
        self.holder, self.database_url, self.poll_s = holder, database_url, poll_s
        self._stop = threading.Event()
        self._seen: tuple[str, str] | None = None  # the (version, sha256) acted on last
        self.errors = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        from sqlalchemy import create_engine

        engine = create_engine(self.database_url, pool_pre_ping=True)
        try:
            while not self._stop.wait(self.poll_s):
                try:
                    self.check(engine)
                except Exception as exc:  # the database away: keep serving, look again next time
                    self.errors += 1
                    log.warning("model registry unreadable: %s", exc)
        finally:
            engine.dispose()

    def check(self, engine) -> SwapResult | None:
        from schemas.registry import active_row

        with self.holder.registry_lock:
            with engine.connect() as conn:
                row = conn.execute(active_row()).first()
            if row is None or (row.version, row.sha256) == self._seen:
                return None
            self._seen = (row.version, row.sha256)
            if self.holder.loaded and self.holder.current.manifest_sha256 == row.sha256.lower():
                return None
            return self.holder.swap(row.path, expected_sha256=row.sha256)
