"""A cache of beams in front of any engine: a prompt decoded once is not decoded again by the same model.

The default policy is prompted with the last history item alone (``recast.sft``), so the whole catalog is at
most a few thousand distinct prompts, and with anchors (``recast.anchors``) every request is several of them.
A decode is deterministic for a model, a prompt, a width and the trie it runs over, so its beam can be kept
and handed back: the result is the one the engine returned for that prompt, in every engine, and the
engines keep ranking alike.

The cache lives as long as its engine, and a served model owns its engine (``serving.served_model``), so a
hot-swap or a catalog change starts an empty cache with the new model and nothing stale is served. The
trie a prompt decodes over is part of its key: ``live`` rows (retired items, a request's removals) are
keyed by their digest, so a prompt decoded over a smaller catalog is a different entry. Least recently used
entries go first once ``capacity`` is reached. A batch's repeated prompts are decoded once, cached or not.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import torch

from recast.beam import BeamResult
from serving.engines.base import Engine

Key = tuple[tuple[int, ...], int, bytes]


class CachedEngine:
    """An :class:`~serving.engines.base.Engine` that answers repeated prompts from memory."""

    def __init__(self, engine: Engine, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.engine, self.capacity = engine, capacity
        self.name = engine.name
        self.hits = self.misses = 0
        self._entries: OrderedDict[Key, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()  # the batcher decodes on a worker thread; stats are read on others

    def beams(self, prompts: list[list[int]], width: int, live: torch.Tensor | None = None) -> BeamResult:
        if not prompts:
            return self.engine.beams(prompts, width, live)
        keys = [(tuple(p), width, digest) for p, digest in zip(prompts, _live_digests(live, len(prompts)), strict=True)]
        with self._lock:
            found = {key: self._entries[key] for key in set(keys) if key in self._entries}
            for key in found:
                self._entries.move_to_end(key)
        first: dict[Key, int] = {}  # each missing key's first row, in order
        for row, key in enumerate(keys):
            if key not in found:
                first.setdefault(key, row)
        missing, rows = list(first), list(first.values())
        if missing:
            fresh = self.engine.beams([prompts[r] for r in rows], width, None if live is None else live[rows])
            decoded = {key: (fresh.items[i].clone(), fresh.scores[i].clone()) for i, key in enumerate(missing)}
            with self._lock:
                for key, entry in decoded.items():
                    self._entries[key] = entry
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
            found.update(decoded)
        with self._lock:
            self.hits += len(keys) - len(missing)
            self.misses += len(missing)
        return BeamResult(torch.stack([found[k][0] for k in keys]), torch.stack([found[k][1] for k in keys]))

    def stats(self) -> dict:
        """Prompts answered from memory and decoded since the engine started, and entries held."""
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "entries": len(self._entries)}

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
        self.engine.close()


def _live_digests(live: torch.Tensor | None, rows: int) -> list[bytes]:
    """One key part per prompt for the trie it decodes over: empty for the whole trie, else a digest of its
    ``live`` row. A row broadcast to every prompt (the retired set's, ``expand``) is hashed once."""
    if live is None:
        return [b""] * rows
    if rows and live.stride(0) == 0:
        return [_digest(live[0])] * rows
    return [_digest(row) for row in live]


def _digest(row: torch.Tensor) -> bytes:
    return hashlib.blake2b(row.contiguous().numpy().tobytes(), digest_size=16).digest()
