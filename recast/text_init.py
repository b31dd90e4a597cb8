"""Item text in the SID token embeddings: a starting point that already knows what items are.

A SID is a residual code: ``<a_i>`` names a cluster of items, ``<b_j>`` the residual inside it, and
so on. Each token's starting embedding is the mean *residual* text vector of the items whose code
holds it at that level (level 0: the items' vectors; level 1: minus their level-0 token's mean; ...),
so tokens of similar items start close together and a token seen in few training targets is not a
random vector. The architecture is unchanged (the weights still load in transformers and vLLM);
only the initial values move.

Item vectors are the top ``dim`` directions of the TF-IDF matrix (a randomised SVD with an explicit
generator: pure and repeatable).
"""

from __future__ import annotations

import torch

from recast.text import TextModel


def item_vectors(text: TextModel, dim: int, generator: torch.Generator, oversample: int = 16) -> torch.Tensor:
    """(N, dim) item coordinates in the TF-IDF matrix's top ``dim`` singular directions (``U * S``).

    A randomised range finder with two power iterations: X (N, V) is sparse, so only products with it
    are formed."""
    X, XT = text._by_item, text._by_word  # (N, V), (V, N), sparse CSR
    r = min(dim + oversample, text.num_words, text.num_items)
    omega = torch.randn(text.num_words, r, generator=generator)
    Q = torch.linalg.qr(X @ omega).Q  # (N, r)
    for _ in range(2):
        Q = torch.linalg.qr(X @ torch.linalg.qr(XT @ Q).Q).Q
    B = (XT @ Q).T  # (r, V) = Q^T X
    U, S, _ = torch.linalg.svd(B, full_matrices=False)
    vectors = (Q @ U[:, :dim]) * S[:dim]
    if vectors.shape[1] < dim:  # a catalog with fewer words than dim: pad with zeros
        vectors = torch.cat((vectors, torch.zeros(vectors.shape[0], dim - vectors.shape[1])), dim=1)
    return vectors


def token_vectors(codes: torch.Tensor, vectors: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual mean text vector of every SID token: codes (N, L), vectors (N, d) -> (V, d), used (V,).

    ``used[v]`` is False for tokens no item code holds (special tokens): their rows are 0.

    >>> codes = torch.tensor([[4, 6], [4, 7], [5, 6]])
    >>> vecs, used = token_vectors(codes, torch.tensor([[1.0], [3.0], [10.0]]), 8)
    >>> vecs.squeeze(1).tolist(), used.tolist()
    ([0.0, 0.0, 0.0, 0.0, 2.0, 10.0, -0.5, 1.0], [False, False, False, False, True, True, True, True])
    """
    N, L = codes.shape
    out = torch.zeros(vocab_size, vectors.shape[1])
    used = torch.zeros(vocab_size, dtype=torch.bool)
    residual = vectors.clone()
    for level in range(L):
        tokens = codes[:, level]
        sums = torch.zeros_like(out).index_add_(0, tokens, residual)
        counts = torch.bincount(tokens, minlength=vocab_size).clamp(min=1).unsqueeze(1)
        means = sums / counts
        out[tokens] = means[tokens]
        used[tokens] = True
        residual = residual - means[tokens]
    return out, used


def scaled_to(values: torch.Tensor, rows: torch.Tensor, std: float) -> torch.Tensor:
    """``values`` scaled so that its ``rows`` have standard deviation ``std`` (the init's scale)."""
    current = values[rows].std().clamp(min=1e-12)
    return values * (std / current)


@torch.no_grad()
def add_text_to_embeddings(model, codes: torch.Tensor, vectors: torch.Tensor, scale: float) -> None:
    """Add each SID token's residual text vector to its input and output embedding rows (``model`` is a
    ``recast.model.SidPolicy``), scaled to ``scale`` times the init's standard deviation (0.02).

    vectors (N, d_model) from :func:`item_vectors`."""
    weight = model.model.embed_tokens.weight  # (V, d)
    tokens, used = token_vectors(codes, vectors, weight.shape[0])
    tokens = scaled_to(tokens, used, 0.02 * scale)
    weight.add_(tokens)
    model.lm_head.weight.add_(tokens)
