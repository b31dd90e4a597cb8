"""Small random policies and catalogs for the decoding tests (no files needed)."""

from __future__ import annotations

import torch

from recast.model import PolicyConfig, SidPolicy
from recast.trie import ItemTrie

SPECIAL = 4  # [PAD] [BOS] [EOS] [UNK]
PAD, BOS = 0, 1


def random_codes(num_items: int, branching: int, depth: int, seed: int) -> torch.Tensor:
    """(N, depth) distinct codes; level l uses the id range [SPECIAL + l*branching, ...)."""
    g = torch.Generator().manual_seed(seed)
    seen: set[tuple[int, ...]] = set()
    while len(seen) < num_items:
        seen.add(
            tuple(
                SPECIAL + level * branching + int(torch.randint(branching, (1,), generator=g)) for level in range(depth)
            )
        )
    return torch.tensor(sorted(seen), dtype=torch.long)


def tiny_policy(vocab_size: int, seed: int = 0, **overrides) -> SidPolicy:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=vocab_size, n_layer=2, n_head=2, d_model=16, d_ff=32, max_positions=64)
    cfg.update(overrides)
    model = SidPolicy(PolicyConfig(**cfg)).eval()
    # Larger weights than the init so distributions are far from uniform (ties would hide bugs).
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(25.0)
    return model


def setup(num_items=30, branching=4, depth=3, seed=0):
    codes = random_codes(num_items, branching, depth, seed)
    vocab = SPECIAL + branching * depth
    return codes, ItemTrie.build(codes, vocab), tiny_policy(vocab, seed)


def prompt_of(codes: torch.Tensor, history: list[int]) -> list[int]:
    return [BOS] + codes[history].reshape(-1).tolist()
