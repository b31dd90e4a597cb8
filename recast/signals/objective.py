"""Losses that turn advantages into an actor update.

All token tensors are (M, L): M actor rows (group members), L SID tokens each.

PPO-clip with asymmetric bounds (0.2 / 0.28, as OpenOneRec-RL) plus beta times the
k3 estimator exp(d) - d - 1, d = log pi_ref - log pi_theta, on the same tokens.
Beam candidates are not samples from pi, so the k3 sum is not an unbiased estimate
of KL(pi || pi_ref): it is a per-token penalty, >= 0 and 0 exactly where the policy
matches the reference on the tokens being updated, which is the anchoring role the
KL term plays in the open frameworks that also update on beam candidates.

The loss is a *sum* divided by a normaliser the caller chooses (see
``recast.signals.strategy``): a token mean makes a 2-row ReCast batch and a W-row
baseline batch take very different step sizes at the same learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ObjectiveConfig:
    clip_low: float = 0.2
    clip_high: float = 0.28
    kl_beta: float = 1e-3
    logistic_tau: float = 1.0  # the pairwise logistic variant's temperature

    def __post_init__(self) -> None:
        if not (0 <= self.clip_low < 1 and self.clip_high >= 0):
            raise ValueError("clip bounds must satisfy 0 <= clip_low < 1 and clip_high >= 0")
        if self.kl_beta < 0 or self.logistic_tau <= 0:
            raise ValueError("kl_beta must be >= 0 and logistic_tau > 0")


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token exp(d) - d - 1 with d = ref - logp; 0 where they agree, > 0 elsewhere.

    >>> round(k3_kl(torch.tensor([0.0]), torch.tensor([1.0])).item(), 4)  # e - 2
    0.7183
    """
    delta = ref_logp - logp
    return delta.exp() - delta - 1.0


def ppo_clip(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, config: ObjectiveConfig):
    """Per-token clipped surrogate -min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A).

    With one PPO epoch rho = 1 and the gradient is -A * grad log pi.
    """
    ratio = (logp - old_logp).exp()
    adv = advantages[:, None]
    clipped = ratio.clamp(1.0 - config.clip_low, 1.0 + config.clip_high)
    return -torch.minimum(ratio * adv, clipped * adv)


def policy_gradient_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    normaliser: float,
    config: ObjectiveConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """sum over tokens of (PPO-clip + beta * k3) / normaliser, and its parts for logging."""
    if normaliser <= 0:
        raise ValueError("normaliser must be > 0")
    surrogate = ppo_clip(logp, old_logp, advantages, config)
    kl = k3_kl(logp, ref_logp)
    loss = (surrogate + config.kl_beta * kl).sum() / normaliser
    return loss, {"surrogate": surrogate.sum().item() / normaliser, "kl": kl.mean().item() if kl.numel() else 0.0}


def pairwise_logistic_loss(
    logp_pos: torch.Tensor,
    ref_pos: torch.Tensor,
    logp_neg: torch.Tensor,
    ref_neg: torch.Tensor,
    normaliser: float,
    config: ObjectiveConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """sum over pairs of -log sigmoid(tau [(lp+ - ref+) - (lp- - ref-)]) / normaliser.

    Sequence log-probabilities (P,). Reference-anchored and self-limiting: once the
    positive leads the negative by more than the reference did, the gradient fades,
    so it needs no separate KL term.

    >>> z = torch.zeros(1)
    >>> round(pairwise_logistic_loss(z, z, z, z, 1.0, ObjectiveConfig())[0].item(), 4)  # log 2
    0.6931
    """
    if normaliser <= 0:
        raise ValueError("normaliser must be > 0")
    margin = (logp_pos - ref_pos) - (logp_neg - ref_neg)
    loss = -F.logsigmoid(config.logistic_tau * margin).sum() / normaliser
    return loss, {"surrogate": loss.item(), "kl": 0.0}


@dataclass(frozen=True)
class PairBatch:
    """Pair terms over actor rows, as tensors (P,): row indices, weights, kind, hinge margins."""

    positive: torch.Tensor  # (P,) long
    negative: torch.Tensor  # (P,) long
    weight: torch.Tensor  # (P,)
    hinge: torch.Tensor  # (P,) bool: hinge term (else reference-anchored logistic)
    margin: torch.Tensor  # (P,) hinge margins

    @classmethod
    def empty(cls) -> PairBatch:
        z = torch.zeros(0)
        return cls(z.long(), z.long(), z, z.bool(), z)

    def __len__(self) -> int:
        return int(self.positive.numel())


def pair_losses(seq: torch.Tensor, ref_seq: torch.Tensor, pairs: PairBatch, tau: float) -> torch.Tensor:
    """(P,) weighted pair losses on sequence log-probabilities seq, ref_seq (M,).

    logistic: -log sigmoid(tau [(lp+ - ref+) - (lp- - ref-)]), self-limiting relative to the
    reference; hinge: relu(margin - (lp+ - lp-)), exactly 0 once the positive leads by the margin.

    >>> seq, ref = torch.tensor([-5.0, -3.0]), torch.tensor([-5.0, -3.0])
    >>> hinge = PairBatch(torch.tensor([0]), torch.tensor([1]), torch.tensor([0.5]), torch.tensor([True]),
    ...                   torch.tensor([1.0]))
    >>> pair_losses(seq, ref, hinge, 1.0).tolist()  # .5 * (1 - (-5 + 3))
    [1.5]
    """
    gap = seq[pairs.positive] - seq[pairs.negative]
    ref_gap = ref_seq[pairs.positive] - ref_seq[pairs.negative]
    logistic = -F.logsigmoid(tau * (gap - ref_gap))
    hinge = F.relu(pairs.margin - gap)
    return pairs.weight * torch.where(pairs.hinge, hinge, logistic)


def actor_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    pairs: PairBatch,
    normaliser: float,
    config: ObjectiveConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The whole actor objective of a plan, all terms summed and divided by one normaliser:
    PPO-clip on every row's advantage, beta * k3 on every row's tokens, and the pair terms
    (sequence-level, on the row sums). Token tensors (M, L), advantages (M,)."""
    if normaliser <= 0:
        raise ValueError("normaliser must be > 0")
    surrogate = ppo_clip(logp, old_logp, advantages, config)  # (M, L)
    kl = k3_kl(logp, ref_logp)  # (M, L)
    pair = pair_losses(logp.sum(-1), ref_logp.sum(-1), pairs, config.logistic_tau) if len(pairs) else logp.new_zeros(0)
    loss = (surrogate.sum() + config.kl_beta * kl.sum() + pair.sum()) / normaliser
    return loss, {
        "surrogate": (surrogate.sum().item() + pair.sum().item()) / normaliser,
        "kl": kl.mean().item() if kl.numel() else 0.0,
    }
