"""Hot-swap: load the next model beside the serving one, then replace the reference.

:meth:`ModelHolder.swap` verifies (the registry's manifest hash, then every file against
the manifest), loads, builds the engine and warms it while the old model keeps serving;
only a model that passed all of that becomes ``current``, in one reference assignment.
Batches read ``current`` once, so a batch in flight finishes on the model it started on,
and the old model is closed only after such batches (``retire``).

:class:`RegistryWatcher` polls the ``model_registry`` table for the newest ``active``
row: the registry is the truth, so whenever the served model is not the active row's
checkpoint it swaps to it (an admin swap lasts until the next look). A checkpoint that
failed to load is tried again as soon as the row (version, hash), *its files* or the served
catalog version change, never every poll (the catalog is read just before each swap, so a model
trained on a catalog version this replica had not polled yet is not refused for it); until
then ``/readyz`` says the service disagrees with the registry and why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from recast.catalog import Catalog
from schemas.settings import Settings
from serving.catalog import LiveCatalog, look
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
    def __init__(self, catalog: Catalog, settings: Settings, retire: Callable[[ServedModel], None] | None = None,
                 live: LiveCatalog | None = None):  # fmt: skip
        self.catalog, self.settings = catalog, settings
        self.live = live  # the served catalog's state: a model is refused unless it extends the one it was trained on
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
            # The served model's cache of beams (serving.engines.beam_cache); it starts empty with each model.
            "beam_cache": model.engine.stats() if model and hasattr(model.engine, "stats") else {},
        }

    def swap(self, path: Path | str, expected_sha256: str | None = None) -> SwapResult:
        """Load ``path`` and serve it; on any failure keep serving the current model and say why."""
        with self._swap_lock:
            t0 = time.monotonic()
            previous = self._current
            old_version = previous.version if previous else None
            # Loaded over the live catalog: the data set's items and every item added online so far.
            catalog = self.live.current.catalog if self.live is not None else self.catalog
            try:
                model = load_served_model(path, catalog, self.settings, expected_sha256,
                                          admit=self.live.admit if self.live is not None else None)  # fmt: skip
            except ModelLoadError as exc:
                self.swaps["refused"] += 1
                self.last = SwapResult(False, old_version, old_version, time.monotonic() - t0, str(exc))
                log.error("swap to %s refused, %s keeps serving: %s", path, old_version, exc)
                return self.last
            self._current = model  # the swap: one reference assignment
            self.catalog = catalog  # after the model: a request that reads an added item's id finds a model with it
            if previous is not None:
                self.retire(previous)
            self.swaps["ok"] += 1
            self.last = SwapResult(True, model.version, old_version, time.monotonic() - t0)
            log.info("now serving %s (was %s); swap took %.2f s", model.version, old_version, self.last.seconds)
            return self.last


def files_fingerprint(path: Path | str) -> tuple:
    """(name, size, mtime) of every file of a checkpoint directory: changes when any file is written again."""
    try:
        return tuple(sorted((p.name, st.st_size, st.st_mtime_ns) for p in Path(path).iterdir()
                            if (st := p.stat()) is not None))  # fmt: skip
    except OSError as exc:
        return (("unreadable", str(exc)),)


@dataclass(frozen=True)
class RegistryView:
    """What the watcher last read: the active row (None: no model is active), when, or why it could not."""

    version: str | None = None
    sha256: str | None = None
    path: str | None = None
    read_at: float | None = None  # time.time() of the last successful read
    error: str | None = None  # the last read's failure (the database away); cleared by a good read


class RegistryWatcher(threading.Thread):
    """Every ``poll_s``: the newest ``active`` registry row, swapped in unless it is what is served."""

    def __init__(self, holder: ModelHolder, database_url: str, poll_s: float):
        super().__init__(name="recast-registry-watcher", daemon=True)
        self.holder, self.database_url, self.poll_s = holder, database_url, poll_s
        self._stop = threading.Event()
        self._refused: tuple | None = None  # (version, sha256, files) of the last refused swap: not tried again
        self.note: str | None = None  # what became of the last swap to the active row (for /readyz)
        self.view = RegistryView()
        self.errors = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        from sqlalchemy import create_engine

        engine = create_engine(self.database_url, pool_pre_ping=True)
        try:
            while not self._stop.is_set():  # look at once: a service started without --checkpoint has nothing
                try:
                    self.check(engine)
                except Exception as exc:  # the database away: keep serving, look again next time
                    self.errors += 1
                    self.view = replace(self.view, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                    log.warning("model registry unreadable: %s", self.view.error)
                self._stop.wait(self.poll_s)
        finally:
            engine.dispose()

    def check(self, engine) -> SwapResult | None:
        from schemas.registry import active_row

        with self.holder.registry_lock:
            with engine.connect() as conn:
                row = conn.execute(active_row()).first()
            self.view = RegistryView(version=row.version, sha256=row.sha256, path=row.path, read_at=time.time()) \
                if row is not None else RegistryView(read_at=time.time())
            if row is None:
                return None
            if self.holder.loaded and self.holder.current.manifest_sha256 == row.sha256.lower():
                self._refused = None
                return None
            live = self.holder.live
            if live is not None:
                # A refresh child may be trained on a catalog version (items added or retired) that this replica's
                # catalog poll has not read yet: read the catalog first, so the swap is judged against the newest.
                look(live, engine)
            key = (row.version, row.sha256, files_fingerprint(row.path), live.current.version if live else None)
            if key == self._refused:
                return None  # refused before and neither the files nor the served catalog changed: /readyz says so
            self.note = "loading it now"
            result = self.holder.swap(row.path, expected_sha256=row.sha256)
            self._refused = None if result.ok else key
            self.note = None if result.ok else \
                f"refused: {result.error}; tried again when its files or the served catalog change"
            return result

    def disagreement(self) -> str | None:
        """Why the served model is not the registry's active one, or None when they agree (or nothing is active)."""
        view, model = self.view, self.holder.get()
        if view.read_at is None or view.sha256 is None:
            return None
        if model is not None and model.manifest_sha256 == view.sha256.lower():
            return None
        served = model.version if model is not None else "nothing"
        why = f" ({self.note})" if self.note else ""
        return f"serving {served} but the registry's active model is {view.version}{why}"
