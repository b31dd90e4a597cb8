"""The served ranking: the policy's beam mixed with the transition and text scorers.

Each scorer becomes a vector over the catalog and they are mixed:
``w * softmax(beam / temperature) + wt * text / max(text) + (1 - w - wt) * transition / max(transition)``.
The policy part is its renormalised item distribution restricted to the beam and
flattened by ``temperature`` (the small decoder is over-confident); items outside
the beam get 0 from it. The transition and text parts are scaled so their best
item scores 1. The ``default`` policy alone ties the transition model on this data (it
is distilled from the other two scorers), and the text scorer (``recast.text``) reaches
the targets that no interaction count has seen. The defaults were tuned on an inner
validation split carved out of the training users (BENCHMARKS.md), never on the held-out
users; the mix was checked again for the ``default`` policy and stays (issue 15).

A checkpoint with a learned ranker (:mod:`recast.ranker`) is served by :func:`fuse_ranked` instead: the ranker
weighs the transition and text scorers per candidate, and the beam is blended in after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FusionConfig:
    policy_weight: float = 0.4
    text_weight: float = 0.3
    temperature: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.policy_weight <= 1.0:
            raise ValueError(f"policy_weight must be in [0, 1], got {self.policy_weight}")
        # The tolerance admits mixes like 0.9 + 0.1, whose difference 1 - 0.9 rounds below 0.1.
        if not 0.0 <= self.text_weight <= 1.0 - self.policy_weight + 1e-9:
            raise ValueError(
                f"text_weight must be in [0, 1 - policy_weight = {1.0 - self.policy_weight:g}], got {self.text_weight}"
            )
        if self.temperature <= 0.0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    @property
    def transition_weight(self) -> float:
        return 1.0 - self.policy_weight - self.text_weight


def mix_scorers(
    transition_scores: torch.Tensor, text_scores: torch.Tensor | None, transition_weight: float, text_weight: float
) -> torch.Tensor:
    """(B, N) ``transition_weight * transition / max + text_weight * text / max``, each scaled per row so
    its best item scores 1; without text scores only the transition part is there. The served mix and
    the distillation teacher (``recast.distill``) share it, so they score with one formula."""
    mixed = transition_weight * transition_scores / transition_scores.amax(dim=1, keepdim=True).clamp(min=1e-12)
    if text_scores is not None and text_weight > 0:
        mixed = mixed + text_weight * text_scores / text_scores.amax(dim=1, keepdim=True).clamp(min=1e-12)
    return mixed


def fuse(
    beam: list[tuple[int, float]],
    transition_scores: torch.Tensor,
    k: int,
    config: FusionConfig,
    text_scores: torch.Tensor | None = None,
) -> list[tuple[int, float]]:
    """The top-k (item, fused score) pairs, best first.

    ``beam``: the policy's (catalog position, log-probability) pairs;
    ``transition_scores``, ``text_scores``: (N,) non-negative scores over the whole
    catalog (without text scores their weight goes to the transition part).
    """
    items = torch.tensor([[i for i, _ in beam]], dtype=torch.long).view(1, -1)
    scores = torch.tensor([[s for _, s in beam]], dtype=torch.float).view(1, -1)
    text = None if text_scores is None else text_scores[None]
    return fuse_batch(items, scores, transition_scores[None], k, config, text)[0]


def fuse_batch(
    items: torch.Tensor,
    scores: torch.Tensor,
    transition_scores: torch.Tensor,
    k: int,
    config: FusionConfig,
    text_scores: torch.Tensor | None = None,
    removed: torch.Tensor | None = None,
) -> list[list[tuple[int, float]]]:
    """:func:`fuse` for a batch in one pass: ``items``/``scores`` (B, W) beams (-1 / -inf where a beam ran
    out), ``transition_scores``/``text_scores`` (B, N). Row by row it is exactly :func:`fuse`.

    ``removed`` (B, N) bool: items that are not candidates for that row (retired, or excluded by the request).
    The transition and text scorers cover the whole catalog, so masking the beam alone would not keep them out.
    A row's list is shorter than k only when fewer than k items remain."""
    w = config.policy_weight
    w_text = config.text_weight if text_scores is not None else 0.0
    fused = mix_scorers(transition_scores, text_scores, 1.0 - w - w_text, w_text)
    return _top_k(_add_policy(fused, items, scores, w, config.temperature), k, removed)


def fuse_ranked(
    items: torch.Tensor,
    scores: torch.Tensor,
    ranked: torch.Tensor,
    k: int,
    policy_weight: float,
    temperature: float,
    removed: torch.Tensor | None = None,
) -> list[list[tuple[int, float]]]:
    """:func:`fuse_batch` where a learned ranker (:mod:`recast.ranker`) has already ranked the scorers'
    candidates: ``ranked`` (B, N) is its probability over each row's candidates (0 elsewhere), and the mix is
    ``(1 - policy_weight) * ranked + policy_weight * softmax(beam / temperature)``."""
    if not 0.0 <= policy_weight <= 1.0:
        raise ValueError(f"policy_weight must be in [0, 1], got {policy_weight}")
    return _top_k(_add_policy((1.0 - policy_weight) * ranked, items, scores, policy_weight, temperature), k, removed)


def _add_policy(fused: torch.Tensor, items: torch.Tensor, scores: torch.Tensor, weight: float,
                temperature: float) -> torch.Tensor:  # fmt: skip
    """``fused`` plus ``weight`` times the policy's distribution over each row's valid beams (-1 items, -inf
    scores: a beam that ran out); a row without one adds nothing."""
    if not (items >= 0).any():
        return fused
    return fused.scatter_add(1, items.clamp(min=0), weight * beam_distribution(items, scores, temperature))


def beam_distribution(items: torch.Tensor, scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, W) the policy's distribution over each row's valid beams, ``softmax(score / temperature)``; 0 at -1
    items, and a row without a valid beam all 0."""
    valid = items >= 0
    logits = torch.where(valid, scores / temperature, float("-inf"))
    return torch.where(valid, logits.softmax(dim=1), 0.0).nan_to_num(0.0)


def _top_k(fused: torch.Tensor, k: int, removed: torch.Tensor | None) -> list[list[tuple[int, float]]]:
    """Each row's k best (item, score) pairs, best first, never a ``removed`` item (a row's list is shorter than k
    only when fewer than k items remain)."""
    if removed is not None:
        fused = fused.masked_fill(removed, float("-inf"))
    order = torch.argsort(-fused, dim=1, stable=True)[:, :k]
    return [[(i, s) for i, s in zip(o, v) if s != float("-inf")]
            for o, v in zip(order.tolist(), fused.gather(1, order).tolist(), strict=True)]  # fmt: skip
