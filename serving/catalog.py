"""The catalog the service serves right now: the data set's items and the items added online, with the retirements
Postgres has recorded.

It lives beside the model, not in it. A swapped-in model is served under the same retired set, and a retirement
needs no swap. :class:`LiveCatalog` holds one immutable :class:`CatalogSnapshot`, and changing it is a single
reference assignment. Every batch reads the snapshot once, when it starts, and removes the snapshot's retired
items from its trie and its fused ranking (:meth:`serving.served_model.ServedModel.rank`). The recommend route
reads the snapshot again before it answers, so a list built after a retirement returns never holds the
retired item, even if its batch started before the retirement.

Postgres is the truth. :func:`record_retirement` appends a version. The service that took the call applies it
at once, and every other replica picks it up on its next look (:class:`CatalogWatcher`, every
``RECAST_CATALOG_POLL_S``), as a retirement made with ``recast items retire`` does. The snapshot only moves
forward: a version is applied only when it is newer than the current one and extends it.

Adding items (:func:`record_addition`) is also a version, and the ledger keeps each added item's entry, so every
process rebuilds the same grown catalog (:func:`grown_catalog`: the data set's items, then the added ones in the
order they were added). A snapshot holds that catalog, but a model decodes only the items it was loaded over, so
added items are *served from the next model load*: the add route reloads the served checkpoint at once, other
replicas at their next swap (the nightly refresh's, or ``POST /v1/admin/model``). Retirements need no swap.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import torch
from sqlalchemy import Connection, Engine

from recast.added_items import added_item
from recast.catalog import Catalog, CatalogError, append_items, sid_text
from recast.catalog_version import (
    CatalogVersion,
    CatalogVersionError,
    base_version,
    extension_problem,
    recorded_version,
)
from recast.sids.served import ServedCoder
from recast.tokenizer import SidTokenizer
from schemas import catalog as ledger

log = logging.getLogger("recast.catalog")


class CatalogConflict(RuntimeError):
    """Postgres holds a catalog that this service cannot serve: it does not extend what is served, or it is not
    the data set's. The message says how."""


@dataclass(frozen=True)
class CatalogSnapshot:
    state: CatalogVersion
    retired_positions: frozenset[int]  # catalog positions of the retired items
    source: str  # where the state came from: "postgres", "the data set", or "checkpoint <version>"
    retired_index: torch.Tensor = field(repr=False, compare=False)  # the same positions as a tensor, for masks
    catalog: Catalog = field(repr=False, compare=False)  # every item of ``state``: positions are its positions

    @property
    def version(self) -> int | None:
        return self.state.version


def snapshot(catalog: Catalog, state: CatalogVersion, source: str) -> CatalogSnapshot:
    positions = frozenset(catalog.index[i] for i in state.retired)
    return CatalogSnapshot(state, positions, source, torch.tensor(sorted(positions), dtype=torch.long), catalog)


@dataclass(frozen=True)
class Retirement:
    version: int  # the catalog version that holds the retirement (the head, if nothing was new)
    digest: str
    retired: list[str]  # newly retired by this call
    already: list[str]  # retired before it


def read_head(conn: Connection) -> CatalogVersion | None:
    """The head version's contents from the ledger, checked against the digest recorded with it."""
    number = ledger.head_number(conn)
    if number is None:
        return None
    found = ledger.contents(conn, number)
    try:
        return recorded_version(found.codes, found.retired, number, found.version.digest)
    except CatalogVersionError as exc:
        raise CatalogConflict(str(exc)) from None


def ensure_base(conn: Connection, catalog: Catalog, actor: str) -> CatalogVersion:
    """The head version, after recording the data set's catalog as version 1 if there is none yet. The head must
    hold exactly the data set's items with their codes: this service can only serve those."""
    ledger.lock(conn)
    base = base_version(catalog)
    head = read_head(conn)
    if head is None:
        number = ledger.append(conn, digest=base.digest, items=len(base.codes), retired=0, actor=actor,
                               note="the data set's catalog", added=dict(base.codes))  # fmt: skip
        log.info("recorded the data set's catalog as catalog version %d (%d items)", number, len(base.codes))
        return CatalogVersion(base.codes, {}, number)
    check_data_set(base, head)
    return head


def check_data_set(base: CatalogVersion, state: CatalogVersion) -> None:
    """Raise :class:`CatalogConflict` unless ``state`` holds every item of the data set with its code: the service
    reads their titles and positions from the data set. Items beyond them were added online (their entries are
    in the ledger, :func:`grown_catalog`)."""
    problem = extension_problem(base, CatalogVersion(state.codes, {}, state.version))
    if problem:
        raise CatalogConflict(f"the catalog in Postgres (version {state.version}) is not the data set's: {problem}")


def grown_catalog(conn: Connection, catalog: Catalog, version: int) -> Catalog:
    """The data set's ``catalog`` with the items added online by ``version`` appended, in the order they were
    added, each with its recorded code: the same catalog, positions included, in every process that reads it."""
    added = ledger.added_items(conn, version)
    items = [added_item(a.item_id, a.code, a.entry) for a in added if a.item_id not in catalog.index]
    try:
        return append_items(catalog, items) if items else catalog
    except CatalogError as exc:
        raise CatalogConflict(f"catalog version {version}: the items added online cannot be served: {exc}") from None


class ItemsExist(CatalogVersionError):
    """Items to add whose ids the catalog already holds (retired ones included: an id is never reused)."""

    def __init__(self, ids: list[str]):
        super().__init__(f"{len(ids)} item id(s) are already in the catalog (an id is never reused; add an item "
                         f"that comes back under a new id): {', '.join(repr(i) for i in ids[:10])}")  # fmt: skip
        self.ids = ids


@dataclass(frozen=True)
class Addition:
    version: int
    digest: str
    codes: dict[str, str]  # item id -> the code it was given


def record_addition(conn: Connection, catalog: Catalog, entries: dict[str, dict], actor: str, note: str = "",
                    texts: dict[str, dict] | None = None) -> tuple[Addition, CatalogVersion, Catalog]:  # fmt: skip
    """Add items (id -> ``items.json`` entry, already validated) in a new catalog version, in the caller's
    transaction. Codes come from :class:`recast.sids.served.ServedCoder` over the head's grown catalog, limited to
    the tokens that catalog's items use (what a policy trained on it has embeddings for). ``texts``: the data
    set's entries (its ``items.json``), for the coder's text; without them the catalog's titles and brands.
    Returns the addition, the new version and the grown catalog. Raises :class:`ItemsExist` for a known id and
    :class:`~recast.catalog.CatalogError` when no code can be given."""
    head = ensure_base(conn, catalog, actor)
    known = [i for i in entries if i in head.codes]
    if known:
        raise ItemsExist(known)
    grown = grown_catalog(conn, catalog, head.version)
    all_texts = {**(texts or {}), **{a.item_id: a.entry for a in ledger.added_items(conn, head.version)}}
    coder = ServedCoder.from_catalog(grown, all_texts, known_tokens=SidTokenizer.from_catalog(grown).vocab)
    codes = {i: sid_text(code) for i, code in coder.assign(entries).items()}
    state = head.add(codes)
    number = ledger.append(conn, digest=state.digest, items=len(state.codes), retired=len(state.retired),
                           actor=actor, note=note or f"added {len(codes)} item(s)", added=codes,
                           entries=entries)  # fmt: skip
    state = CatalogVersion(state.codes, state.retired, number)
    return Addition(number, state.digest, codes), state, grown_catalog(conn, catalog, number)


def record_retirement(conn: Connection, catalog: Catalog, item_ids: list[str], reason: str, actor: str,
                      note: str = "") -> tuple[Retirement, CatalogVersion]:  # fmt: skip
    """Retire ``item_ids`` in a new catalog version, in the caller's transaction. If every id was already retired,
    no version is added. Raises :class:`~recast.catalog_version.CatalogVersionError` for unknown ids or a bad
    reason, and :class:`CatalogConflict` when Postgres holds another catalog."""
    head = ensure_base(conn, catalog, actor)
    state, newly, already = head.retire(item_ids, reason)
    if not newly:
        return Retirement(head.version, head.digest, [], already), head
    number = ledger.append(conn, digest=state.digest, items=len(state.codes), retired=len(state.retired),
                           actor=actor, note=note or f"retired {len(newly)} item(s): {reason}",
                           retirements={i: reason for i in newly})  # fmt: skip
    state = CatalogVersion(state.codes, state.retired, number)
    return Retirement(number, state.digest, newly, already), state


class LiveCatalog:
    """The served catalog's state: the data set's base version until Postgres is read, then the ledger's head."""

    def __init__(self, catalog: Catalog, texts: dict[str, dict] | None = None):
        self.catalog = catalog  # the data set's; the snapshot's catalog also holds the items added online
        self.texts = texts  # the data set's items.json entries: the text new items' codes are chosen by
        self.base = base_version(catalog)
        self._current = snapshot(catalog, self.base, "the data set")
        self._lock = threading.Lock()  # serialises apply(): the watcher and the retire route both apply
        self.read_at: float | None = None  # time.time() of the last good look at Postgres (None: never)
        self.error: str | None = None  # why the last look failed, or why its version was not applied
        self.conflict: str | None = None  # the head that cannot be served, while it cannot (a readiness failure)

    @property
    def current(self) -> CatalogSnapshot:
        return self._current

    def apply(self, state: CatalogVersion, source: str = "postgres", catalog: Catalog | None = None) -> bool:
        """Serve ``state`` from now on, if it is newer than what is served and extends it. Returns whether it was
        applied. A version that does not extend what is served raises :class:`CatalogConflict`. ``catalog``:
        the grown catalog holding ``state``'s items (default: the one served, when it holds them all)."""
        with self._lock:
            catalog = catalog or self._current.catalog
            missing = [i for i in state.codes if i not in catalog.index]
            if missing:
                raise CatalogConflict(f"catalog {state.name}: item {missing[0]!r} is not in the catalog it came with")
            current = self._current.state
            if state.version is not None and current.version is not None and state.version <= current.version:
                return False  # already served, or older than what is (a slow reader racing a retirement)
            problem = extension_problem(current, state)
            if problem is not None:
                raise CatalogConflict(f"catalog {state.name} does not extend the served {current.name}: {problem}")
            self._current = snapshot(catalog, state, source)  # the change: one reference assignment
        log.info("serving catalog %s: %d item(s), %d retired", state.name, len(catalog), len(state.retired))
        return True

    def admit(self, trained: CatalogVersion) -> str | None:
        """Why a checkpoint trained on ``trained`` must not be served under this catalog, or None.

        The served catalog must extend it. Before Postgres was ever read, the service knows no retirements. A
        checkpoint that names some then teaches it at least those: they are adopted, so an item retired before
        the model was trained is not served while the database is away."""
        with self._lock:
            current = self._current
            if (self.read_at is None and current.state.version is None and not extension_problem(self.base, trained)
                    and all(i in self.catalog.index for i in trained.codes)):  # fmt: skip
                if trained.retired and extension_problem(trained, current.state):
                    self._current = snapshot(self.catalog, trained, f"checkpoint catalog {trained.name}")
                    log.warning("catalog versions not read yet: serving the %d retired item(s) the checkpoint "
                                "names (catalog %s)", len(trained.retired), trained.name)  # fmt: skip
                return None
        problem = extension_problem(trained, current.state)
        return None if problem is None else f"the served catalog ({current.state.name}) does not extend it: {problem}"

    def refresh(self, engine: Engine, actor: str = "recast-serve") -> bool:
        """Look at Postgres and serve its head version if it is newer (recording the data set's catalog as
        version 1 when there is none). Returns whether the served catalog changed. Read failures propagate (the
        caller reports them)."""
        state = grown = None  # unchanged since the last look: one index lookup per poll
        with engine.connect() as conn:
            number = ledger.head_number(conn)
            if number is not None and number != self._current.version:
                state = read_head(conn)
                grown = self._grown(conn, state)
        if number is None:
            with engine.begin() as conn:
                state = ensure_base(conn, self.catalog, actor)
        changed = False
        if state is not None:
            check_data_set(self.base, state)
            changed = self.apply(state, catalog=grown)
        self.read_at, self.error, self.conflict = time.time(), None, None
        return changed

    def retire(self, engine: Engine, item_ids: list[str], reason: str, actor: str, note: str = "") -> Retirement:
        """Record the retirement in Postgres, then serve it. When this returns, no list built afterwards holds the
        items."""
        with engine.begin() as conn:
            result, state = record_retirement(conn, self.catalog, item_ids, reason, actor, note)
            grown = self._grown(conn, state)
        check_data_set(self.base, state)
        self.apply(state, catalog=grown)
        return result

    def add(self, engine: Engine, entries: dict[str, dict], actor: str, note: str = "") -> Addition:
        """Record new items in Postgres and serve the grown catalog's state. Their codes are served (and the
        items returned) from the next model load over it (:meth:`serving.hotswap.ModelHolder.swap`)."""
        with engine.begin() as conn:
            result, state, grown = record_addition(conn, self.catalog, entries, actor, note, self.texts)
        self.apply(state, catalog=grown)
        return result

    def _grown(self, conn: Connection, state: CatalogVersion) -> Catalog | None:
        """The catalog holding ``state``'s items: None (the served one) unless the ledger has added items since."""
        if all(i in self._current.catalog.index for i in state.codes):
            return None
        return grown_catalog(conn, self.catalog, state.version)


class CatalogWatcher(threading.Thread):
    """Every ``poll_s``: Postgres's head catalog version, served once it is newer than what is served."""

    def __init__(self, live: LiveCatalog, database_url: str, poll_s: float):
        super().__init__(name="recast-catalog-watcher", daemon=True)
        self.live, self.database_url, self.poll_s = live, database_url, poll_s
        self._stop = threading.Event()
        self.errors = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        from sqlalchemy import create_engine

        engine = create_engine(self.database_url, pool_pre_ping=True, pool_size=1)
        try:
            while not self._stop.wait(self.poll_s):
                look(self.live, engine)
        finally:
            engine.dispose()


def look(live: LiveCatalog, engine: Engine) -> None:
    """One look at Postgres, its failure recorded on ``live`` (and logged) rather than raised: the service keeps
    serving what it has."""
    try:
        live.refresh(engine)
    except (CatalogConflict, CatalogVersionError) as exc:
        live.error = live.conflict = str(exc)
        log.error("catalog version not applied: %s", exc)
    except Exception as exc:  # the database away: keep serving, look again next time
        live.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        log.warning("catalog versions unreadable: %s", live.error)
