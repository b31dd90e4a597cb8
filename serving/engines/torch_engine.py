"""The built-in engine: the core's batched beam search with a KV cache, in this process."""

from __future__ import annotations

import torch

from recast.beam import BeamResult, BeamSearchConfig, beam_search
from recast.model import SidPolicy
from recast.trie import ItemTrie


class TorchEngine:
    name = "torch"

    def __init__(self, model: SidPolicy, trie: ItemTrie, pad_id: int):
        self.model, self.trie, self.pad_id = model.eval(), trie, pad_id

    def beams(self, prompts: list[list[int]], width: int, live: torch.Tensor | None = None) -> BeamResult:
        return beam_search(self.model, self.trie, prompts, BeamSearchConfig(width), self.pad_id, live)

    def close(self) -> None:
        pass
