"""Decoding a short-prompt policy once per recent history item, and mixing what the decodes say.

The default policy is trained on one-item prompts (``recast.sft``): it knows what follows an item, not a
user. The transition scorer reads a history the same way, counts after each of the last items mixed with
weight ``decay ** distance``; this does it with the policy's own distributions. For a history
``h`` and ``anchors`` A, the prompts are ``h``, ``h[:-1]``, ..., ``h[:-(A - 1)]`` (each cut to the
prompt length as usual), so the anchor at distance d is the item d steps before the last. Each is
decoded as any prompt is; a request's items are then scored by

    p(i) = Σ_d w_d · exp(score_d(i)),      w_d ∝ decay ** d over the anchors the history has,

``score_d`` being item i's renormalised log-probability in anchor d's beam (an item outside that beam
contributes nothing), and the request's beam becomes the top ``width`` items by ``log p``. The merge
runs above the engines, on what they return, so every engine ranks alike: an engine still decodes
plain prompts, only more of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recast.beam import NEG_INF, BeamResult


@dataclass(frozen=True)
class AnchorLayout:
    """Which request each decoded prompt belongs to and its weight in that request's mix."""

    rows: torch.Tensor  # (P,) long: the request of each prompt, requests in order, nearest anchor first
    weights: torch.Tensor  # (P,) float: sums to 1 over each request's prompts
    requests: int


def anchor_histories(histories: list[list[int]], anchors: int, decay: float) -> tuple[list[list[int]], AnchorLayout]:
    """Every request's prefixes ending at its last ``anchors`` items (an empty history: itself, once).

    >>> prefixes, layout = anchor_histories([[1, 2, 3], [4]], anchors=2, decay=0.5)
    >>> prefixes, layout.rows.tolist(), [round(w, 3) for w in layout.weights.tolist()]
    ([[1, 2, 3], [1, 2], [4]], [0, 0, 1], [0.667, 0.333, 1.0])
    """
    if anchors < 1:
        raise ValueError(f"anchors must be >= 1, got {anchors}")
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    prefixes, rows, weights = [], [], []
    for row, history in enumerate(histories):
        n = max(1, min(anchors, len(history)))
        total = sum(decay**d for d in range(n))
        for d in range(n):
            prefixes.append(list(history[: len(history) - d]))
            rows.append(row)
            weights.append(decay**d / total)
    return prefixes, AnchorLayout(torch.tensor(rows, dtype=torch.long), torch.tensor(weights), len(histories))


def merge_beams(beams: BeamResult, layout: AnchorLayout, num_items: int, width: int) -> BeamResult:
    """(P, W) beams of the anchor prompts -> (B, width) beams of the requests, scored by log of the mixed
    probability (module doc). Rows with fewer than ``width`` items in their anchors' beams end in -1 / -inf.

    >>> beams = BeamResult(torch.tensor([[0, 1], [1, 2]]), torch.tensor([[0.8, 0.2], [0.9, 0.1]]).log())
    >>> layout = AnchorLayout(torch.tensor([0, 0]), torch.tensor([0.5, 0.5]), 1)
    >>> merged = merge_beams(beams, layout, num_items=3, width=3)
    >>> merged.items.tolist(), [round(p, 2) for p in merged.scores.exp()[0].tolist()]
    ([[1, 0, 2]], [0.55, 0.4, 0.05])
    """
    valid = beams.items >= 0
    mass = torch.where(valid, beams.scores.exp(), 0.0) * layout.weights[:, None]
    mixed = torch.zeros(layout.requests, num_items)
    rows = layout.rows[:, None].expand_as(beams.items)
    mixed.index_put_((rows[valid], beams.items[valid]), mass[valid], accumulate=True)
    # Stable, so equal mixtures keep catalog order in every engine (topk does not promise an order for ties).
    order = torch.argsort(-mixed, dim=1, stable=True)[:, : min(width, num_items)]
    picked = mixed.gather(1, order)
    held = picked > 0
    return BeamResult(torch.where(held, order, -1), torch.where(held, picked.log(), NEG_INF))
