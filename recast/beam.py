"""Batched trie-constrained beam search with a KV cache, and teacher-forced scoring.

Scoring follows vLLM's beam search under a masking logits processor: at each step
the logits are restricted to the tokens the trie allows and *renormalised* over
them (log-softmax of the masked logits), and an item's score is the sum of those
log-probabilities. ``transformers.generate(prefix_allowed_tokens_fn=...)`` ranks by
raw log-probabilities instead; the two disagree on most top-10s (platform notes),
so every engine in this product uses the renormalised definition.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recast.model import SidPolicy, StepCache
from recast.trie import ROOT, ItemTrie, keep_live

NEG_INF = float("-inf")


@dataclass(frozen=True)
class BeamSearchConfig:
    width: int = 50

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"beam width must be >= 1, got {self.width}")


@dataclass
class BeamResult:
    items: torch.Tensor  # (B, W) catalog positions, best first; -1 where the catalog ran out
    scores: torch.Tensor  # (B, W) sum of renormalised log-probs; -inf where items is -1

    def top(self, row: int, k: int | None = None) -> list[tuple[int, float]]:
        """The valid (item, score) pairs of one request, best first."""
        pairs = [(i, s) for i, s in zip(self.items[row].tolist(), self.scores[row].tolist()) if i >= 0]
        return pairs if k is None else pairs[:k]


def constrained_log_softmax(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """log-softmax over the allowed tokens only; -inf elsewhere and on rows that allow nothing.

    A row with no allowed token must stay all -inf: letting it fall back to the
    unconstrained distribution is how constrained decoders emit invalid items.
    """
    masked = logits.float().masked_fill(~allowed, NEG_INF)
    logp = masked.log_softmax(dim=-1)
    return torch.where(allowed.any(dim=-1, keepdim=True), logp, torch.full_like(logp, NEG_INF))


def pad_prompts(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into idx (B, T) and valid (B, T)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (the BOS token)")
    T = max(len(p) for p in prompts)
    idx = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    valid = torch.zeros(len(prompts), T, dtype=torch.bool)
    for row, p in enumerate(prompts):
        idx[row, T - len(p) :] = torch.tensor(p, dtype=torch.long)
        valid[row, T - len(p) :] = True
    return idx, valid


@torch.no_grad()
def beam_search(
    model: SidPolicy, trie: ItemTrie, prompts: list[list[int]], config: BeamSearchConfig, pad_id: int,
    live: torch.Tensor | None = None,
) -> BeamResult:
    """The top-``width`` distinct catalog items for each prompt, best first.

    ``live`` (B, num_nodes), from :meth:`ItemTrie.live_nodes`: each prompt decodes over the trie of its live
    items only. Its scores are renormalised over that trie, as if the removed items had never been in it."""
    idx, valid = pad_prompts(prompts, pad_id)
    B, V = idx.shape[0], trie.vocab_size
    logits, prefix = model.prefill(idx, valid)
    logits = logits[:, None]  # (B, 1, V): one beam per prompt before the first token
    nodes = torch.full((B, 1), ROOT, dtype=torch.long)
    scores = torch.zeros(B, 1)
    tokens = torch.empty(B, 0, dtype=torch.long)  # the last token of each beam
    steps: StepCache | None = None
    for level in range(trie.depth):
        if level > 0:
            logits, steps = model.decode(tokens, prefix, steps)  # (B, W, V)
        allowed, next_node = trie.expand(nodes.reshape(-1))
        if live is not None:
            allowed = keep_live(allowed, next_node, live, torch.arange(B).repeat_interleave(nodes.shape[1]))
        logp = constrained_log_softmax(logits.reshape(-1, V), allowed)
        candidates = (scores.reshape(-1, 1) + logp).view(B, -1)  # (B, W * V)
        k = min(config.width, candidates.shape[1])
        scores, flat = candidates.topk(k, dim=-1)  # (B, k), sorted best first
        parents, tokens = flat // V, flat % V
        nodes = next_node.view(B, -1).gather(1, flat)
        nodes = torch.where(scores == NEG_INF, trie.dead, nodes)
        if steps is not None:
            steps = steps.reorder(parents)
    items = torch.where(scores == NEG_INF, -1, trie.leaf_item[nodes])
    return BeamResult(items=items, scores=scores)


@torch.no_grad()
def score_codes(model: SidPolicy, trie: ItemTrie, prompts: list[list[int]], codes: torch.Tensor, pad_id: int):
    """Teacher-forced scores of given items under the same renormalised definition.

    codes (B, M, L): M item codes per prompt. Returns (B, M) sums of renormalised
    log-probabilities (-inf for a code the trie does not contain), i.e. exactly the
    score beam search would give those items.
    """
    idx, valid = pad_prompts(prompts, pad_id)
    B, M, L = codes.shape
    V = trie.vocab_size
    logits, prefix = model.prefill(idx, valid)
    logits = logits[:, None].expand(B, M, V)
    nodes = torch.full((B, M), ROOT, dtype=torch.long)
    total = torch.zeros(B, M)
    steps: StepCache | None = None
    for level in range(L):
        if level > 0:
            logits, steps = model.decode(codes[:, :, level - 1], prefix, steps)
        allowed, next_node = trie.expand(nodes.reshape(-1))
        logp = constrained_log_softmax(logits.reshape(-1, V), allowed).view(B, M, V)
        token = codes[:, :, level]
        total = total + logp.gather(2, token[..., None]).squeeze(-1)
        nodes = next_node.view(B, M, V).gather(2, token[..., None]).squeeze(-1)
        nodes = torch.where(nodes < 0, trie.dead, nodes)
    return total
