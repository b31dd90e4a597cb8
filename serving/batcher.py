"""Micro-batching: concurrent requests share one decode.

Requests wait on an asyncio queue. The collector takes the first, then whatever else is
queued, and waits at most ``max_wait_ms`` for more until ``max_size``; the batch is then
decoded in one engine call on a single decode thread (torch's kernels release the GIL, so
the event loop keeps accepting requests meanwhile, and they form the next batch). One
decode at a time is deliberate: on a CPU box two concurrent decodes only split the cores.

The model is read once per batch: a swap between batches changes the model of the next
batch, never of a batch in flight (see :mod:`serving.hotswap`). So is the catalog's state: the
retired items of the snapshot a batch read are removed from every request in it (:mod:`serving.catalog`).

The queue is bounded (``max_queue``): past it a request is refused at once with
:class:`~serving.admission.Overloaded`, carrying an estimate of how long the queue needs to drain, so
an overloaded service answers the requests it admits in bounded time and tells the rest when to
come back, instead of letting every request's latency grow without end.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from serving.admission import Overloaded
from serving.catalog import CatalogSnapshot
from serving.served_model import ServedModel

log = logging.getLogger("recast.batcher")


@dataclass
class RankRequest:
    history: list[int]  # catalog positions, oldest first
    k: int
    exclude: set[int] = field(default_factory=set)  # left out of the list after ranking (exclude_history)
    removed: set[int] = field(default_factory=set)  # not candidates at all: out of the trie and the fusion


@dataclass
class Ranked:
    items: list[tuple[int, float]]  # (catalog position, score), best first
    model: ServedModel  # the model that ranked it
    batch_size: int
    catalog: CatalogSnapshot | None = None  # the catalog state it was ranked under


@dataclass
class _Waiting:
    request: RankRequest
    future: asyncio.Future


class MicroBatcher:
    def __init__(
        self,
        current: Callable[[], ServedModel],
        max_size: int,
        max_wait_ms: float,
        on_batch: Callable[[int, float], None] | None = None,
        max_queue: int | None = None,
        catalog: Callable[[], CatalogSnapshot] | None = None,
    ):
        if max_size < 1 or max_wait_ms < 0 or (max_queue is not None and max_queue < 1):
            raise ValueError(f"max_size and max_queue must be >= 1 and max_wait_ms >= 0, got {max_size}, "
                             f"{max_queue}, {max_wait_ms}")  # fmt: skip
        self.current, self.max_size, self.max_wait = current, max_size, max_wait_ms / 1000
        self.catalog = catalog  # the served catalog's state; its retired items are removed from every request
        self.max_queue = max_queue
        self._waiting = 0  # admitted and not yet answered (queued or in the batch being decoded)
        self._batch_s = 0.05  # moving average of one batch's decode, for Retry-After
        self.on_batch = on_batch  # (batch size, engine seconds), for metrics
        self._queue: asyncio.Queue[_Waiting] | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recast-decode")

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._collect(), name="recast-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._decoder.shutdown(wait=True)

    def depth(self) -> int:
        return self._waiting

    def full(self) -> bool:
        return self.max_queue is not None and self._waiting >= self.max_queue

    def retry_after(self) -> int:
        """Whole seconds until the queue has likely drained (at least 1)."""
        return max(1, math.ceil((self._waiting / self.max_size + 1) * self._batch_s))

    async def rank(self, request: RankRequest) -> Ranked:
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        if self.full():
            raise Overloaded(self._waiting, self.retry_after())
        future = asyncio.get_running_loop().create_future()
        self._waiting += 1
        try:
            await self._queue.put(_Waiting(request, future))
            return await future
        finally:
            self._waiting -= 1

    def retire(self, model: ServedModel) -> None:
        """Close a swapped-out model once the decode thread is done with any batch still on it (from any thread).

        Queued through the event loop: a batch reads the model and enters the decode queue in one loop step,
        so a batch that got the old model is queued before its close."""
        if self._loop is None:
            model.close()
        else:
            self._loop.call_soon_threadsafe(self._decoder.submit, model.close)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_size:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            batch = [w for w in batch if not w.future.done()]  # a client that went away
            if batch:
                await self._run(loop, batch)

    async def _run(self, loop, batch: list[_Waiting]) -> None:
        model = self.current()
        catalog = self.catalog() if self.catalog is not None else None  # read once per batch, like the model
        requests = [w.request for w in batch]
        t0 = time.perf_counter()
        try:
            ranked = await loop.run_in_executor(
                self._decoder,
                model.rank,
                [r.history for r in requests],
                [r.k for r in requests],
                [r.exclude for r in requests],
                [r.removed for r in requests],
                catalog.retired_index if catalog is not None else None,
            )
        except Exception as exc:  # the batch's requests fail; the batcher goes on
            log.exception("decode of a batch of %d failed", len(batch))
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(exc)
            return
        seconds = time.perf_counter() - t0
        self._batch_s = 0.8 * self._batch_s + 0.2 * seconds
        if self.on_batch is not None:
            self.on_batch(len(batch), seconds)
        for w, items in zip(batch, ranked, strict=True):
            if not w.future.done():
                w.future.set_result(Ranked(items, model, len(batch), catalog))
