"""The served ranking's last stage: a small learned ranker over the transition and text scorers' candidates.

Why a ranker rather than the fixed mix (:mod:`recast.fusion`): on the tuning users the mix's grid was flat (its
best cells within 0.172-0.176 HR@10), and no further count or text scorer moved it (BENCHMARKS.md, issue 15).
What the mix cannot do is *condition*: trust the counts where an item has many, the text where it has none, a
repeat where the history holds one. A two-layer network over a handful of per-candidate features, trained with
a listwise softmax loss (the target among its row's candidates), does that.

Candidates of a history: the union of the top ``per_scorer`` items by transition score, by text score and by
their even mix (:data:`FEATURES` says what each candidate is described by). The features must be *out of fold*
when it is trained: a transition model that counted a row's own next item would teach the ranker to trust the
counts far more than they deserve on a new user, so ``learner.ranker_trainer`` fits it on folds of users, each
described by counts from the other folds. The policy is not a feature for the same reason: it has seen every
training row, and a ranker fed its in-sample confidence learnt to follow it and lost 0.05 HR@10 on the tuning
users. It is blended in after the ranker instead, with the ranker's ``policy_weight``
(:func:`recast.fusion.fuse_ranked`).

Pure torch, and small: the weights are a few hundred numbers saved beside the scorers in the checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from recast.baselines import TransitionModel
from recast.text import TextModel

# What describes a candidate, in order. Scores "per row" are divided by the row's best, as the mix does.
# Features are only ever appended: a ranker saved when there were fewer reads the first ones (Ranker.scores).
FEATURES = (
    "transition score, per row",
    "text score, per row",
    "even mix of the two",
    "log(1 + rank) by transition",
    "log(1 + rank) by text",
    "log(1 + rank) by the mix",
    "transition score from the last item alone, per row",
    "text score from the last item alone, per row",
    "log popularity (counted targets)",
    "in the history",
    "history length",
    "log transition score",
    "text score",
    "added since the counts were made",
)


@dataclass(frozen=True)
class RankerConfig:
    """How a ranker is trained (``learner.ranker_trainer``); chosen on the tuning users (BENCHMARKS.md)."""

    per_scorer: int = 50  # candidates taken from each of the three orders
    hidden: int = 32
    epochs: int = 60
    lr: float = 0.01
    weight_decay: float = 0.01
    batch_size: int = 256
    folds: int = 5  # user folds for the out-of-fold features
    # The share of the items each fold hides from its counts and marks added (TransitionModel.forgetting), so the
    # ranker sees items with text and no counts bought, as items added online are. 0: it never sees one, and
    # learns that an uncounted item is rarely next (BENCHMARKS.md, issue 16). Recipes set it
    # (recast.sft.SFTConfig.ranker_new_share).
    new_share: float = 0.0
    # A further share each fold thins to a few counts (1 to young_until - 1 each) and marks added
    # (TransitionModel.thinning): items added online that a refresh has counted a few times and kept marked
    # (RefreshConfig.added_mark_until). 0: the ranker never sees a marked item with counts. At 0.1 it was level
    # with 0 over every row, handing back to the old targets what the kept mark gives the new ones (BENCHMARKS.md,
    # issue 15, fifteenth round), so no recipe sets it.
    young_share: float = 0.0
    young_until: int = 20
    seed: int = 0
    # The policy's share of the served list, blended after the ranker (recast.fusion.fuse_ranked). On the tuning
    # users 0, 0.1 and 0.2 tied (within one row in 580) and 0.4 lost; 0.2 keeps what the learner changes in
    # what is served.
    policy_weight: float = 0.2

    def __post_init__(self) -> None:
        for name in ("per_scorer", "hidden", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2 (features come from the other folds), got {self.folds}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.new_share < 1.0:
            raise ValueError(f"new_share must be in [0, 1), got {self.new_share}")
        if not 0.0 <= self.young_share < 1.0 - self.new_share or self.young_until < 2:
            raise ValueError(f"young_share must be in [0, 1 - new_share) and young_until >= 2, got "
                             f"{self.young_share} and {self.young_until}")  # fmt: skip
        if not 0.0 <= self.policy_weight <= 1.0:
            raise ValueError(f"policy_weight must be in [0, 1], got {self.policy_weight}")


@dataclass(frozen=True)
class Candidates:
    items: torch.Tensor  # (B, C) catalog positions, -1 where a row has fewer than C distinct candidates
    features: torch.Tensor  # (B, C, len(FEATURES)); rows of -1 items are zeros

    @property
    def mask(self) -> torch.Tensor:
        return self.items >= 0


def candidates(
    histories: Sequence[Sequence[int]],
    transition_model: TransitionModel,
    text_model: TextModel,
    per_scorer: int,
    transition: torch.Tensor | None = None,
    text: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
) -> Candidates:
    """The candidates of each history (already cut to the scorers' length) and their features.

    ``transition``/``text``: the (B, N) scores of these histories where the caller has them already. ``extra``
    (B, E): more items to describe with the scorers' (the policy's beam; -1 where a row has fewer), each listed
    once with the rest.

    >>> from recast.windows import Sequence as S
    >>> tm = TransitionModel.fit([S("u", (0, 1, 2), (1.0, 1.0, 1.0))], 4)
    >>> txt = TextModel.fit(["red drill", "red drill bit", "blue saw", "blue saw blade"], min_df=1)
    >>> c = candidates([[0]], tm, txt, per_scorer=1)
    >>> c.items.tolist()  # item 1 is the best by counts, by text and by the mix: listed once, then padding
    [[1, -1, -1]]
    >>> c.features.shape, c.features[0, 0, FEATURES.index("transition score, per row")].item()
    (torch.Size([1, 3, 14]), 1.0)
    """
    trans = transition if transition is not None else torch.stack([transition_model.scores(h) for h in histories])
    texts = text if text is not None else text_model.scores_batch(histories)
    last_trans = torch.stack([transition_model.scores(h[-1:]) for h in histories])
    last_text = text_model.scores_batch([h[-1:] for h in histories])
    trans_n, text_n = _per_row(trans), _per_row(texts)
    mix = 0.5 * trans_n + 0.5 * text_n
    per = min(per_scorer, trans.shape[1])
    items = torch.cat([s.topk(per, dim=1).indices for s in (trans, texts, mix)], dim=1)
    if extra is not None:  # a -1 becomes a copy of the row's first candidate, removed with the other repeats
        items = torch.cat([items, torch.where(extra >= 0, extra, items[:, :1])], dim=1)
    items, _ = items.sort(dim=1)
    repeat = torch.zeros_like(items, dtype=torch.bool)
    repeat[:, 1:] = items[:, 1:] == items[:, :-1]
    # Distinct candidates first (ascending position), padding (-1) last: a stable sort on the repeat flag.
    items = items.masked_fill(repeat, -1).gather(1, torch.argsort(repeat.long(), dim=1, stable=True))
    valid = items >= 0
    at = items.clamp(min=0)

    def take(scores: torch.Tensor) -> torch.Tensor:
        return scores.gather(1, at)

    def log_rank(scores: torch.Tensor) -> torch.Tensor:
        order = torch.argsort(-scores, dim=1, stable=True)
        ranks = torch.empty_like(order).scatter_(1, order, torch.arange(scores.shape[1]).expand_as(order))
        return torch.log1p(take(ranks).float())

    width = max((len(h) for h in histories), default=0)
    padded = torch.full((len(histories), max(width, 1)), -1, dtype=torch.long)
    for row, h in enumerate(histories):
        padded[row, : len(h)] = torch.as_tensor(list(h), dtype=torch.long)
    in_history = (items.unsqueeze(2) == padded.unsqueeze(1)).any(dim=2).float()
    lengths = torch.tensor([float(len(h)) for h in histories]).unsqueeze(1).expand_as(in_history)
    popularity = transition_model.popularity[at]
    added = transition_model.added_items().float()[at]
    features = torch.stack(
        [
            take(trans_n), take(text_n), take(mix),
            log_rank(trans), log_rank(texts), log_rank(mix),
            take(_per_row(last_trans)), take(_per_row(last_text)),
            torch.log(popularity + 1e-6), in_history, lengths,
            torch.log(take(trans) + 1e-9), take(texts), added,
        ],
        dim=2,
    )  # fmt: skip
    return Candidates(items, features * valid.unsqueeze(2))


def _per_row(scores: torch.Tensor) -> torch.Tensor:
    return scores / scores.amax(dim=1, keepdim=True).clamp(min=1e-12)


@dataclass(frozen=True)
class Ranker:
    """``score = w2 · relu(w1 · (x - mean) / std + b1) + b2`` per candidate."""

    mean: torch.Tensor  # (F,)
    std: torch.Tensor  # (F,)
    w1: torch.Tensor  # (H, F)
    b1: torch.Tensor  # (H,)
    w2: torch.Tensor  # (H,)
    b2: torch.Tensor  # ()
    per_scorer: int
    policy_weight: float  # the policy's share when its beam is blended in (recast.fusion.fuse_ranked)

    def __post_init__(self) -> None:
        width = self.w1.shape[1]
        if self.mean.shape != (width,) or self.std.shape != (width,):
            raise ValueError(f"a ranker over {width} features needs a mean and std of {width}, got "
                             f"{tuple(self.mean.shape)} and {tuple(self.std.shape)}")  # fmt: skip

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """(..., C, F) -> (..., C) candidate scores (higher is better). A ranker saved before the last features
        were added reads the ones it was trained on."""
        features = features[..., : self.w1.shape[1]]
        hidden = torch.relu(((features - self.mean) / self.std) @ self.w1.T + self.b1)
        return hidden @ self.w2 + self.b2

    def probabilities(self, cands: Candidates, num_items: int) -> torch.Tensor:
        """(B, N): each row's softmax over its candidates, 0 for every other item."""
        logits = self.scores(cands.features).masked_fill(~cands.mask, float("-inf"))
        probs = torch.where(cands.mask, logits.softmax(dim=1), 0.0)
        dense = torch.zeros(cands.items.shape[0], num_items)
        return dense.scatter_add(1, cands.items.clamp(min=0), probs)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "std": self.std, "w1": self.w1, "b1": self.b1, "w2": self.w2, "b2": self.b2,
                "per_scorer": torch.tensor(self.per_scorer),
                "policy_weight": torch.tensor(self.policy_weight)}  # fmt: skip

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> Ranker:
        """A saved ranker. One over more features than :data:`FEATURES` was saved by a later version, and this one
        cannot describe its candidates."""
        if t["w1"].shape[1] > len(FEATURES):
            raise ValueError(f"a ranker over {t['w1'].shape[1]} features; this version describes candidates by "
                             f"{len(FEATURES)}")  # fmt: skip
        return cls(t["mean"], t["std"], t["w1"], t["b1"], t["w2"], t["b2"], int(t["per_scorer"]),
                   float(t["policy_weight"]))  # fmt: skip


def fit_ranker(features: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor, config: RankerConfig) -> Ranker:
    """A ranker trained to put each row's target first among its candidates (listwise softmax cross-entropy).

    ``features`` (R, C, F), ``mask`` (R, C) real candidates, ``targets`` (R,) the target's column in each row
    (rows whose target is not a candidate teach nothing and are left out by the caller). Deterministic in
    ``config.seed``: initial weights and batch order come from one generator."""
    if features.shape[0] == 0:
        raise ValueError("no row has its target among its candidates: nothing to train a ranker on")
    real = features[mask]
    spread = real.std(dim=0)
    mean, std = real.mean(dim=0), spread.clamp(min=1e-6)
    # A feature that never varies here (no item hidden as added: new_share 0) can teach nothing: it is left out
    # and gets no weight, so a served value off the training one moves no score, and a ranker over the others
    # is the one it was before the feature was appended (the same draws from the same seed).
    varies = spread >= 1e-6
    z = (((features - mean) / std) * mask.unsqueeze(2))[:, :, varies]
    generator = torch.Generator().manual_seed(config.seed)
    n_in, n_hidden = z.shape[2], config.hidden
    bound1, bound2 = 1 / math.sqrt(n_in), 1 / math.sqrt(n_hidden)  # nn.Linear's default init ranges
    params = [
        (torch.rand(n_hidden, n_in, generator=generator) * 2 - 1) * bound1,
        (torch.rand(n_hidden, generator=generator) * 2 - 1) * bound1,
        (torch.rand(n_hidden, generator=generator) * 2 - 1) * bound2,
        (torch.rand((), generator=generator) * 2 - 1) * bound2,
    ]
    for p in params:
        p.requires_grad_(True)
    w1, b1, w2, b2 = params
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    with torch.enable_grad():
        for _ in range(config.epochs):
            order = torch.randperm(z.shape[0], generator=generator)
            for start in range(0, z.shape[0], config.batch_size):
                picked = order[start : start + config.batch_size]
                logits = (torch.relu(z[picked] @ w1.T + b1) @ w2 + b2).masked_fill(~mask[picked], float("-inf"))
                loss = torch.nn.functional.cross_entropy(logits, targets[picked])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    b1, w2, b2 = (p.detach().clone() for p in params[1:])
    w1 = torch.zeros(n_hidden, features.shape[2])
    w1[:, varies] = params[0].detach()
    return Ranker(mean, std, w1, b1, w2, b2, config.per_scorer, config.policy_weight)
