"""Everything a request needs, built once per process in the app's lifespan (nothing at import)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from recast.catalog import Catalog
from recast.dataset import load_catalog, load_item_entries
from schemas.api import RecommendedItem
from schemas.events import Impression, ServedItem
from schemas.settings import Settings
from serving.admission import RateLimiter
from serving.auth import KeyRing
from serving.batcher import MicroBatcher
from serving.catalog import CatalogWatcher, LiveCatalog, look
from serving.hotswap import ModelHolder, RegistryWatcher
from serving.metrics import Metrics
from serving.publisher import Publisher

log = logging.getLogger("recast.api")


@dataclass
class Services:
    settings: Settings
    holder: ModelHolder
    batcher: MicroBatcher
    publisher: Publisher
    metrics: Metrics
    keys: KeyRing
    limiter: RateLimiter
    live: LiveCatalog  # the served catalog's state: what is retired, under which version
    watcher: RegistryWatcher | None = None
    catalog_watcher: CatalogWatcher | None = None
    _engine: object | None = None  # the registry's database, made on first use by an admin route

    @property
    def catalog(self) -> Catalog:
        """The catalog the served model was loaded over: request ids resolve here. It grows at a swap after items
        are added online (``services.live.current.catalog`` holds them from the moment they are recorded)."""
        return self.holder.catalog

    def database(self):
        """A SQLAlchemy engine on the registry's database (the admin routes'; requests never touch it)."""
        if self._engine is None:
            from sqlalchemy import create_engine

            self._engine = create_engine(self.settings.database_url, pool_pre_ping=True, pool_size=2)
        return self._engine

    def publish_impression(self, request_id: str, user_id: str, segment: str, history: list[str],
                           items: list[RecommendedItem], model_version: str,
                           catalog_version: int | None = None) -> None:  # fmt: skip
        """Hand the served list to the publisher (never waits on Kafka; see :mod:`serving.publisher`)."""
        event = Impression(
            request_id=request_id, user_id=user_id, segment=segment, history=history,
            items=[ServedItem(item_id=i.item_id, score=i.score, rank=i.rank) for i in items],
            model_version=model_version, ts=datetime.now(UTC), catalog_version=catalog_version,
        )  # fmt: skip
        self.publisher.publish(self.settings.impressions_topic, user_id, event.model_dump_json())
        self.metrics.impressions.inc()

    async def stop(self) -> None:
        for watcher in (self.watcher, self.catalog_watcher):
            if watcher is not None:
                watcher.stop()
        await self.batcher.stop()
        await asyncio.to_thread(self.publisher.close)
        if self.holder.loaded:
            self.holder.current.close()
        if self._engine is not None:
            self._engine.dispose()


async def start_services(settings: Settings) -> Services:
    """Load the catalog and read its retirements from Postgres, load the configured checkpoint (warm), start the
    batcher, publisher and watchers. A configured checkpoint that cannot be served stops the start: better no
    process than a wrong model. An unreadable catalog ledger does not: the service is not ready until it is
    read (see ``/readyz``), and the catalog watcher keeps looking."""
    catalog = await asyncio.to_thread(load_catalog, settings.data_dir)
    # The data set's item text: what new items' codes are chosen by (read here, once, not per addition).
    texts = await asyncio.to_thread(load_item_entries, settings.data_dir) if settings.catalog_versions else None
    live = LiveCatalog(catalog, texts)
    if settings.catalog_versions:
        await asyncio.to_thread(_first_look, live, settings.database_url)
    holder = ModelHolder(catalog, settings, live=live)
    keys = KeyRing(settings.api_key_names, settings.admin_token_sha256)
    limiter = RateLimiter(settings.rate_limit, settings.rate_limit_overrides)
    if not settings.api_key_digests:
        log.warning("no storefront API keys configured (RECAST_API_KEYS): every recommend call will get 401")
    if settings.checkpoint is not None:
        result = await asyncio.to_thread(holder.swap, settings.checkpoint)
        if not result.ok:
            raise RuntimeError(f"cannot serve {settings.checkpoint}: {result.error}")
    publisher = Publisher.from_settings(settings)
    metrics = Metrics(publisher.stats, holder.state)
    batcher = MicroBatcher(lambda: holder.current, settings.batch_max_size, settings.batch_max_wait_ms,
                           on_batch=metrics.observe_batch, max_queue=settings.queue_max,
                           catalog=lambda: live.current)  # fmt: skip
    metrics.queue_depth = batcher.depth
    metrics.catalog_state = lambda: {"version": live.current.version, "retired": len(live.current.retired_positions)}
    await batcher.start()
    holder.retire = batcher.retire  # a swapped-out model closes after the batches still on it
    services = Services(settings, holder, batcher, publisher, metrics, keys, limiter, live)
    if settings.registry_poll_s > 0:
        services.watcher = RegistryWatcher(holder, settings.database_url, settings.registry_poll_s)
        services.watcher.start()
    if settings.catalog_versions and settings.catalog_poll_s > 0:
        services.catalog_watcher = CatalogWatcher(live, settings.database_url, settings.catalog_poll_s)
        services.catalog_watcher.start()
    return services


def _first_look(live: LiveCatalog, database_url: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(database_url, poolclass=NullPool)
    try:
        look(live, engine)
    finally:
        engine.dispose()
