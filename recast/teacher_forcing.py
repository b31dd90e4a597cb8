"""Differentiable teacher-forced log-probabilities of given items after given prompts.

The actor update of RL needs log pi(y | x) per SID token for chosen (prompt, item)
pairs, with gradients. Each pair is one right-padded sequence ``prompt + code``;
logits are computed only at the L positions that predict the code (the lm_head is
the widest matmul) and renormalised over the tokens the trie allows there, so the
sum over tokens is exactly the score beam search gave the item
(``recast.beam.score_codes``, tested).
"""

from __future__ import annotations

import torch

from recast.beam import constrained_log_softmax
from recast.model import SidPolicy
from recast.trie import ItemTrie


def pack(prompts: list[list[int]], items: list[int], codes: torch.Tensor, pad_id: int):
    """Right-padded inputs (M, T) and the (M, L) positions whose logits predict each code token."""
    if len(prompts) != len(items):
        raise ValueError("one prompt per item")
    L = codes.shape[1]
    lengths = [len(p) for p in prompts]
    if min(lengths, default=1) < 1:
        raise ValueError("every prompt needs at least one token (the BOS token)")
    T = max(lengths) + L - 1  # the last code token is a target only, never an input
    idx = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    for row, (p, item) in enumerate(zip(prompts, items)):
        seq = p + codes[item, :-1].tolist()
        idx[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    starts = torch.tensor(lengths, dtype=torch.long) - 1
    positions = starts[:, None] + torch.arange(L)[None, :]
    return idx, positions


def token_logprobs(
    model: SidPolicy,
    trie: ItemTrie,
    paths: torch.Tensor,
    prompts: list[list[int]],
    items: list[int],
    codes: torch.Tensor,
    pad_id: int,
) -> torch.Tensor:
    """(M, L) renormalised log-probabilities of each code token of ``items[m]`` after
    ``prompts[m]``. ``paths`` (N, L) is ``recast.sft.item_paths(trie, codes)``.
    Differentiable unless called under ``torch.no_grad()``."""
    idx, positions = pack(prompts, items, codes, pad_id)
    item_index = torch.tensor(items, dtype=torch.long)
    hidden = model.hidden(idx)  # (M, T, D)
    picked = hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))  # (M, L, D)
    logits = model.lm_head(picked)  # (M, L, V)
    allowed, _ = trie.expand(paths[item_index].reshape(-1))
    logp = constrained_log_softmax(logits.reshape(-1, logits.shape[-1]), allowed)
    targets = codes[item_index].reshape(-1, 1)
    return logp.gather(1, targets).view(len(items), -1)
