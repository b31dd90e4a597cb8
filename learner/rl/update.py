"""The actor update of one step, part by part, with the gradient diagnostics that explain it.

The plan's rows are split by *part* (hit, zero, anchor, replay: whose signal a row
carries). Each part runs its own forward and backward, so the gradient of each part
is known exactly, at the cost of the same rows through autograd as one pass: the loss
is a sum of per-row and per-pair terms over one normaliser, and no term crosses two
parts. From the parts come the anchors' share of the squared gradient norm and the
cosine of their gradient with the real hits', and the anchor cap
(``recast.signals.anchors.cap_scale``) scales the anchors' gradient before the step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from learner.rl.memory import measure_peak
from recast.signals.anchors import cap_scale
from recast.signals.objective import ObjectiveConfig, PairBatch, actor_loss
from recast.signals.strategy import ANCHOR, HINGE, HIT, PARTS, ActorPlan

# (model, prompts, items) -> (M, L) token log-probabilities, differentiable unless under no_grad
Scorer = Callable[[torch.nn.Module, list[list[int]], list[int]], torch.Tensor]


@dataclass(frozen=True)
class PartBatch:
    name: str
    prompts: list[list[int]]
    items: list[int]
    advantages: torch.Tensor  # (M,)
    pairs: PairBatch


def split_parts(plan: ActorPlan, prompts: list[list[int]]) -> list[PartBatch]:
    """One batch per part present in the plan, pair indices renumbered inside their part."""
    batches = []
    for name in PARTS:
        index = [i for i, r in enumerate(plan.rows) if r.part == name]
        if not index:
            continue
        local = {g: k for k, g in enumerate(index)}
        pairs = [p for p in plan.pairs if p.positive in local]
        if any(p.negative not in local for p in pairs):
            raise ValueError(f"a pair term crosses parts ({name}): the per-part update would drop it")
        batches.append(
            PartBatch(
                name,
                [prompts[plan.rows[i].group] for i in index],
                [plan.rows[i].item for i in index],
                torch.tensor([plan.rows[i].advantage for i in index], dtype=torch.float32),
                PairBatch(
                    torch.tensor([local[p.positive] for p in pairs], dtype=torch.long),
                    torch.tensor([local[p.negative] for p in pairs], dtype=torch.long),
                    torch.tensor([p.weight for p in pairs], dtype=torch.float32),
                    torch.tensor([p.kind == HINGE for p in pairs], dtype=torch.bool),
                    torch.tensor([p.margin for p in pairs], dtype=torch.float32),
                )
                if pairs
                else PairBatch.empty(),
            )
        )
    return batches


def flat_grad(params: list[torch.nn.Parameter]) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def gradient_figures(grads: dict[str, torch.Tensor]) -> dict:
    """Squared norms per part, the anchors' share of their sum, and cos(anchor, hit)."""
    sq = {name: float(g.pow(2).sum()) for name, g in grads.items()}
    total = sum(sq.values())
    out: dict = {f"grad_sq_{name}": v for name, v in sq.items()}
    out["anchor_share"] = sq.get(ANCHOR, 0.0) / total if total > 0 else None
    if ANCHOR in grads and HIT in grads and sq[ANCHOR] > 0 and sq[HIT] > 0:
        out["anchor_hit_cos"] = float(torch.nn.functional.cosine_similarity(grads[ANCHOR], grads[HIT], dim=0))
    else:
        out["anchor_hit_cos"] = None
    return out


def apply_cap(params: list[torch.nn.Parameter], grads: dict[str, torch.Tensor], cap: float) -> float:
    """Scale the anchors' share of the accumulated gradient down to ``cap``; returns the factor."""
    if ANCHOR not in grads or cap >= 1.0:
        return 1.0
    anchor_sq = float(grads[ANCHOR].pow(2).sum())
    other_sq = sum(float(g.pow(2).sum()) for name, g in grads.items() if name != ANCHOR)
    scale = cap_scale(anchor_sq, other_sq, cap)
    if scale < 1.0:
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.sub_((1.0 - scale) * grads[ANCHOR][offset : offset + n].view_as(p))
            offset += n
    return scale


def run_parts(policy, parts, refs, olds, score: Scorer, normaliser: float, objective: ObjectiveConfig,
              dropout_parts: tuple[str, ...] = ()):  # fmt: skip
    """Forward and backward of every part into the accumulated gradient; returns each part's gradient.
    Parts named in ``dropout_parts`` run in train mode (dropout on), the rest in eval mode."""
    params = [p for p in policy.parameters() if p.requires_grad]
    grads: dict[str, torch.Tensor] = {}
    before = torch.zeros(sum(p.numel() for p in params))
    loss_sum, surrogate, kl_tokens, kl_sum = 0.0, 0.0, 0, 0.0
    for part, ref, old in zip(parts, refs, olds):
        policy.train(part.name in dropout_parts)
        logp = score(policy, part.prompts, part.items)  # (M, L)
        policy.eval()
        old_logp = logp.detach() if old is None else old  # one epoch: the ratio is 1
        loss, figures = actor_loss(logp, old_logp, ref, part.advantages, part.pairs, normaliser, objective)
        loss.backward()
        after = flat_grad(params)
        grads[part.name], before = after - before, after
        loss_sum += loss.item()
        surrogate += figures["surrogate"]
        kl_sum += figures["kl"] * logp.numel()
        kl_tokens += logp.numel()
    return grads, {"loss": loss_sum, "surrogate": surrogate, "kl": kl_sum / max(kl_tokens, 1)}


EMPTY_UPDATE = {
    "loss": 0.0, "surrogate": 0.0, "kl": 0.0, "grad_norm": 0.0, "actor_s": 0.0, "reference_s": 0.0,
    "saved_bytes": 0, "rss_rise": 0, "cuda_peak": None, "anchor_share": None, "anchor_share_capped": None,
    "anchor_hit_cos": None, "anchor_scale": 1.0,
}  # fmt: skip


def actor_update(policy, reference, optimizer, plan: ActorPlan, prompts: list[list[int]], score: Scorer,
                 normaliser: float, objective: ObjectiveConfig, epochs: int, grad_clip: float,
                 anchor_cap: float, dropout_parts: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """Forward, backward and step over the plan's rows only. Returns timings and figures."""
    if not plan.rows:
        return dict(EMPTY_UPDATE)
    parts = split_parts(plan, prompts)
    params = [p for p in policy.parameters() if p.requires_grad]
    started = time.perf_counter()
    with torch.no_grad():
        refs = [score(reference, p.prompts, p.items) for p in parts]
        olds = [score(policy, p.prompts, p.items) if epochs > 1 else None for p in parts]
    reference_s = time.perf_counter() - started
    started = time.perf_counter()
    with measure_peak() as memory:
        for _ in range(epochs):
            optimizer.zero_grad(set_to_none=True)
            grads, figures = run_parts(policy, parts, refs, olds, score, normaliser, objective, dropout_parts)
            diagnostics = gradient_figures(grads)
            scale = apply_cap(params, grads, anchor_cap)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
    actor_s = time.perf_counter() - started
    capped = diagnostics["anchor_share"]
    if capped is not None and scale < 1.0:
        a = scale**2 * diagnostics[f"grad_sq_{ANCHOR}"]
        others = sum(v for k, v in diagnostics.items() if k.startswith("grad_sq_") and k != f"grad_sq_{ANCHOR}")
        capped = a / (a + others) if a + others > 0 else 0.0
    return {
        **figures, **diagnostics, "grad_norm": grad_norm.item(), "actor_s": actor_s, "reference_s": reference_s,
        "saved_bytes": memory.saved_bytes, "rss_rise": memory.rss_rise, "cuda_peak": memory.cuda_peak,
        "anchor_scale": scale, "anchor_share_capped": capped,
        "rows_by_part": {p.name: len(p.items) for p in parts},
    }  # fmt: skip
