"""The item trie as a vLLM v1 logits processor: every token the trie does not allow is masked to -inf.

vLLM's ``LLM.beam_search`` re-feeds every beam as a fresh prompt and its ``BeamSearchParams``
carry no per-request arguments, so the processor is always on and reads a request's place
in the trie from the tail of its tokens alone. A prompt is ``[BOS]`` followed by whole item
codes of length ``L``, so with ``n`` tokens so far the request has generated
``g = (n - 1) % L`` tokens of the current item: the last ``g`` tokens are the trie path.
A tail the trie does not contain gets an all -inf row: falling back to unconstrained
logits is how constrained decoders emit invalid items.

With ``logprobs_mode="processed_logprobs"`` the logprobs vLLM reports are the log-softmax
of these masked logits, i.e. the renormalised per-level score :mod:`recast.beam` defines.

Items removed for a request (retired ones, and those it excludes) are masked the way the torch engine
masks them (:func:`recast.trie.keep_live`). No per-request argument reaches the processor, so it finds a
beam's live mask by the beam's original prompt: its tokens minus the partial code it is decoding. The
engine sets :class:`PromptLive` on the bound class for the length of one ``beam_search`` call.

This module imports vLLM; :mod:`serving.engines.vllm_engine` imports it only when an engine is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from recast.trie import ROOT, ItemTrie, keep_live


def prefix_nodes(trie: ItemTrie, max_len: int | None = None) -> dict[tuple[int, ...], int]:
    """Every prefix of an item code up to ``max_len`` tokens (default L - 1, the ones a decoder stands
    at) -> its trie node, so finding a request's node is one dict lookup. ``max_len=L`` adds the leaves."""
    table = {(): ROOT}
    frontier = [((), ROOT)]
    for _ in range(trie.depth - 1 if max_len is None else max_len):
        nxt = []
        for prefix, node in frontier:
            lo, hi = trie.child_offsets[node].item(), trie.child_offsets[node + 1].item()
            for token, child in zip(trie.child_tokens[lo:hi].tolist(), trie.child_nodes[lo:hi].tolist()):
                table[prefix + (token,)] = child
                nxt.append((prefix + (token,), child))
        frontier = nxt
    return table


def tail_node(tokens: list[int], depth: int, table: dict[tuple[int, ...], int], dead: int) -> int:
    """The trie node a request stands at, from its tokens (``[BOS]`` + whole codes + the partial one)."""
    generated = (len(tokens) - 1) % depth
    tail = tuple(tokens[len(tokens) - generated :]) if generated else ()
    return table.get(tail, dead)


@dataclass(frozen=True)
class PromptLive:
    """Live masks for the prompts of one ``beam_search`` call. ``rows`` maps a prompt's tokens to its row of
    ``table`` (K + 1, num_nodes). The last row is all live, for a prompt not named."""

    rows: dict[tuple[int, ...], int]
    table: torch.Tensor

    @classmethod
    def of(cls, prompts: list[list[int]], live: torch.Tensor) -> PromptLive:
        """``live`` (len(prompts), num_nodes); the caller ensures equal prompts have equal masks."""
        table = torch.cat([live, torch.ones(1, live.shape[1], dtype=torch.bool)])
        return cls({tuple(p): row for row, p in enumerate(prompts)}, table)

    def row(self, tokens: list[int], depth: int) -> int:
        """The row of a beam's tokens: ``[BOS]`` + whole codes (its prompt) + the partial code decoded so far."""
        generated = (len(tokens) - 1) % depth
        return self.rows.get(tuple(tokens[: len(tokens) - generated]), len(self.table) - 1)


def mask_logits(logits: torch.Tensor, trie: ItemTrie, nodes: torch.Tensor, live: torch.Tensor | None = None,
                rows: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Set to -inf, in place, every logit the trie does not allow at each row's node (rows (M,) nodes).
    ``live`` (K, num_nodes) and ``rows`` (M,): row m also drops the tokens into nodes dead in ``live[rows[m]]``.

    Columns past the trie's vocabulary (a model whose output is padded) are never allowed.
    """
    allowed, next_node = trie.expand(nodes.cpu())
    if live is not None:
        allowed = keep_live(allowed, next_node, live, rows)
    V = trie.vocab_size
    if logits.shape[1] > V:
        logits[:, V:] = float("-inf")
    logits[:, :V].masked_fill_(~allowed[:, : logits.shape[1]].to(logits.device), float("-inf"))
    return logits


class TrieLogitsProcessor(LogitsProcessor):
    """Masks each request's row to the tokens its trie node allows. Bind a trie with :func:`processor_for`."""

    trie: ItemTrie  # set on the subclass processor_for() makes
    prefixes: dict[tuple[int, ...], int]
    live: PromptLive | None = None  # set by the engine around one beam_search call; None: every item is live

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        # batch row -> (prompt token ids, output token ids). vLLM hands over its own lists and
        # appends generated tokens to the output list in place, so each row always sees its tokens.
        self.rows: dict[int, tuple[list[int], list[int]]] = {}

    def is_argmax_invariant(self) -> bool:
        return False  # masking changes which token is best

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        # The order BatchUpdate prescribes: removed, added (may reuse a freed slot), moved (compaction).
        for index in batch_update.removed:
            self.rows.pop(index, None)
        for index, _params, prompt, output in batch_update.added:
            self.rows[index] = (prompt or [], output)
        for a, b, directionality in batch_update.moved:
            ra, rb = self.rows.pop(a, None), self.rows.pop(b, None)
            if ra is not None:
                self.rows[b] = ra
            if rb is not None and directionality == MoveDirectionality.SWAP:
                self.rows[a] = rb

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        batch = logits.shape[0]
        # A row the processor was never told about stays at the dead node (all -inf), never unconstrained.
        nodes = torch.full((batch,), self.trie.dead, dtype=torch.long)
        live = self.live
        rows = None if live is None else torch.full((batch,), len(live.table) - 1, dtype=torch.long)
        for index, (prompt, output) in self.rows.items():
            if index < batch:
                tokens = prompt + output
                nodes[index] = tail_node(tokens, self.trie.depth, self.prefixes, self.trie.dead)
                if live is not None:
                    rows[index] = live.row(tokens, self.trie.depth)
        return mask_logits(logits, self.trie, nodes, None if live is None else live.table, rows)


def processor_for(trie: ItemTrie) -> type[TrieLogitsProcessor]:
    """A TrieLogitsProcessor subclass bound to one trie.

    vLLM builds logits processors itself and passes only ``(vllm_config, device, is_pin_memory)``,
    so the trie cannot be a constructor argument; a class per trie carries it instead (the engine
    runs vLLM in this process, so the class object itself reaches the model runner).
    """
    return type("BoundTrieLogitsProcessor", (TrieLogitsProcessor,), {"trie": trie, "prefixes": prefix_nodes(trie)})
