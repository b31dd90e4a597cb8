"""What every engine does: the policy's top items per prompt, under the product's one score.

An engine only *decodes*. The score is the one :mod:`recast.beam` defines (at each
level the logits are restricted to the tokens the item trie allows and renormalised
over them; an item's score is the sum of those log-probabilities), so the torch engine
and vLLM rank identically. Fusion with the other scorers, item ids, titles and the
request's ``k`` belong to the caller (:class:`recast.recommender.Recommender`).
"""

from __future__ import annotations

from typing import Protocol

import torch

from recast.beam import BeamResult


class Engine(Protocol):
    name: str

    def beams(self, prompts: list[list[int]], width: int, live: torch.Tensor | None = None) -> BeamResult:
        """For each prompt (token ids, ``[BOS]`` first) the top-``width`` distinct catalog items, best
        first, as catalog positions and scores; ``-1``/``-inf`` where the catalog ran out.

        ``live`` (B, num_nodes) bool, from :meth:`recast.trie.ItemTrie.live_nodes`: each prompt decodes over the
        trie of its live items only (retired items, and those its request excludes). The beam never spends a
        slot on a removed item, and scores are renormalised over what remains, the same in every engine."""
        ...

    def close(self) -> None:
        """Free what the engine holds (threads, KV cache); it is not used again."""
        ...
