"""Training losses over SID token sequences."""

from __future__ import annotations

import torch

from recast.beam import constrained_log_softmax


def token_nll(logits: torch.Tensor, targets: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood of each target token: logits (..., V), targets (...) -> (...).

    With ``allowed`` (..., V) the softmax runs over the tokens the trie allows at
    that position, the same renormalised distribution beam search scores with, so
    the model spends no capacity on learning which tokens are valid. A target
    outside its allowed set would be infinite loss; callers weight padding 0 and
    this clamps it to stay finite.
    """
    if allowed is None:
        logp = logits.float().log_softmax(dim=-1)
    else:
        logp = constrained_log_softmax(logits, allowed)
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return nll.clamp(max=1e4)


def soft_token_nll(logits: torch.Tensor, soft: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy to a target distribution over tokens: logits, soft (..., V) -> (...).

    With a one-hot ``soft`` it equals :func:`token_nll`. Terms where the target is 0 are left out, so
    a disallowed token (log-probability -inf) with no target mass costs nothing, and target mass on a
    disallowed token (only on padding, weighted 0) is clamped finite as in :func:`token_nll`.
    """
    if allowed is None:
        logp = logits.float().log_softmax(dim=-1)
    else:
        logp = constrained_log_softmax(logits, allowed)
    terms = torch.where(soft > 0, soft * logp.clamp(min=-1e4), 0.0)
    return -terms.sum(dim=-1)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(w * v) / sum(w), 0 when every weight is 0."""
    return (values * weights).sum() / weights.sum().clamp(min=1e-9)
