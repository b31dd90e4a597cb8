"""Build the engine the settings name, behind a cache of beams where one is asked for. Each engine module
imports its heavy library lazily, so choosing ``torch`` never loads vLLM or transformers' generation code."""

from __future__ import annotations

from pathlib import Path

from recast.model import SidPolicy
from recast.trie import ItemTrie
from serving.engines.base import Engine

ENGINES = ("torch", "vllm", "generate")


def build_engine(kind: str, checkpoint_dir: Path, model: SidPolicy, trie: ItemTrie, pad_id: int, *,
                 max_width: int, kv_cache_gib: int = 1, cache_entries: int = 0) -> Engine:  # fmt: skip
    """``cache_entries``: prompts whose beams are kept (:mod:`serving.engines.beam_cache`); 0: none. The naive
    ``generate`` baseline never gets one: it is what the benchmarks measure the real engines against."""
    engine = _build(kind, checkpoint_dir, model, trie, pad_id, max_width, kv_cache_gib)
    if cache_entries and kind != "generate":
        from serving.engines.beam_cache import CachedEngine

        return CachedEngine(engine, cache_entries)
    return engine


def _build(kind: str, checkpoint_dir: Path, model: SidPolicy, trie: ItemTrie, pad_id: int, max_width: int,
           kv_cache_gib: int) -> Engine:  # fmt: skip
    if kind == "torch":
        from serving.engines.torch_engine import TorchEngine

        return TorchEngine(model, trie, pad_id)
    if kind == "vllm":
        from serving.engines.vllm_engine import VllmEngine

        return VllmEngine(checkpoint_dir, trie, max_width=max_width, kv_cache_gib=kv_cache_gib)
    if kind == "generate":
        from serving.engines.generate_engine import GenerateEngine

        return GenerateEngine(checkpoint_dir, trie, pad_id)
    raise ValueError(f"unknown engine {kind!r}; choose one of {', '.join(ENGINES)}")
