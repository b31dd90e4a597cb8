"""Supervised next-item training of the policy: config, presets, batches, one step.

The loop around these (progress, resume, saving) is ``learner.sft_trainer``; this
module is the pure part, testable without files.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from recast.losses import soft_token_nll, token_nll, weighted_mean
from recast.model import SidPolicy
from recast.trie import ROOT, ItemTrie
from recast.windows import Sequence

TEACHERS = ("mix", "ranker")


@dataclass(frozen=True)
class SFTConfig:
    """Everything that decides an SFT run; saved in the checkpoint manifest."""

    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    d_ff: int = 256
    dropout: float = 0.2
    epochs: int = 8  # more epochs memorise the training users (BENCHMARKS.md, preset sweep)
    batch_size: int = 64
    lr: float = 3e-3
    min_lr_ratio: float = 0.05  # cosine decays to lr * this
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    constrained_loss: bool = True  # softmax over trie-allowed tokens, as beam search scores
    max_history: int = 10
    seed: int = 0
    # Distillation (recast.distill): each target becomes (1 - distill_weight) * the true item +
    # distill_weight * the teacher's top-k, the teacher being the transition and text scorers mixed.
    distill_weight: float = 0.0  # 0: plain next-item SFT
    teacher_text_weight: float = 0.5  # text share of the teacher mix; the rest is transitions
    # "mix": the teacher is that mix; "ranker": the learned ranker's probabilities over the same scorers'
    # candidates (recast.ranker; fitted before the labels; it needs ranker=True).
    teacher: str = "mix"
    teacher_top_k: int = 20
    teacher_sharpness: float = 1.0  # teacher probabilities ∝ mixed score ** this, over its top-k
    # > 0: the teacher labels each short-context window reading up to this many items of its row (the served
    # ranker reads 10), not the prompt's few: the ranker was fitted on whole histories. 0: the prompt's items.
    # On one prompt it tied the labels from the prompt's items (BENCHMARKS.md, issue 15, seventh round); under five
    # anchors it led them, and `default` sets 10 (eighth round). The nightly refresh labels its windows the same way
    # (learner.refresh.learn.continue_sft).
    teacher_history: int = 0
    # True: every epoch, each labelled one-item window's target item is drawn from its mixture (the true item with
    # 1 - distill_weight, else the teacher's), and teacher forcing follows it (recast.distill.sample_paths), so the
    # teacher's items are taught at every SID level, not only where they share the true item's prefix. False: the
    # true item's path always. Off in every preset: it fit the objective more closely and led the tuning users inside
    # the noise, then lost on the held-out users on every seed (BENCHMARKS.md, issue 15, tenth round).
    teacher_paths: bool = False
    # Made-up one-item histories (recast.distill.item_teacher_sequences): each catalog item followed by
    # the teacher's top item_teacher_k, weighted item_teacher_weight * p_teacher (0: off).
    item_teacher_weight: float = 0.0
    item_teacher_k: int = 5
    # > 0: a one-item policy trains on its whole objective written out as a table (the windows' mixtures and the
    # made-up pairs summed per item, each item's best this many kept; recast.distill.teacher_table_sequences)
    # instead of on the windows, so every level of every kept item is learnt. 0: the windows and pairs as above.
    # Off in every preset: it tied the windows at twice the time (BENCHMARKS.md, issue 15, sixth round). The nightly
    # refresh trains its new windows towards the same objective either way (learner.refresh.learn.continue_sft).
    teacher_table: int = 0
    # > 0: a one-item policy also learns each window's true target after every single item 2 .. later_steps + 1
    # positions before it, weighted later_weight (recast.windows.later_sequences), so an older anchor's beam
    # answers what comes next after it. The true item only: the teacher reads the next item, not the one after.
    # Off in every preset: one and two steps on tied the default at its cost (BENCHMARKS.md, issue 15, ninth round),
    # and the nightly refresh's continued SFT does not add them.
    later_steps: int = 0
    later_weight: float = 0.25
    # Extra windows whose context is only the last ``short_context`` items (0: off), weighted
    # ``short_context_weight`` (recast.windows.short_context_sequences).
    short_context: int = 0
    short_context_weight: float = 1.0
    # False: train on the short-context windows only (every window, its context cut to the last
    # short_context items); max_history, the prompt's cut, must then equal short_context.
    long_windows: bool = True
    # > 0: a two-item policy. Beside the one-item windows, every window whose context holds two items or more is
    # trained again cut to its last two, weighted this, towards the teacher alone (its share 1, whatever
    # distill_weight is): a true target after two items comes close to naming the user, and a two-item prompt
    # trained on it lost 0.02 HR@10 (BENCHMARKS.md, issue 15, second round), while the teacher's second item is worth
    # 0.011 (fifth round). Needs short_context=1, long_windows=False and max_history=2, the prompt. Off in every
    # preset: it tied the one-item default at 1.7 times the training time (seventh round).
    pair_context_weight: float = 0.0
    average_last: int = 0  # >= 2: save the mean of the weights at the end of the last this many epochs
    length_pool: int = 0  # > 0: batch sequences of similar length (recast.sft.epoch_batches)
    # True: every batch's weighted loss is divided by the mean total weight of a batch (one number per
    # run), so window weights mean the same in every batch; False: by the batch's own total weight,
    # which cancels the weights of a batch whose windows all weigh alike (e.g. only extra windows).
    fixed_loss_scale: bool = False
    # Item text in the SID token embeddings (recast.text_init): the text part's std as a multiple of
    # the random init's (0: off).
    text_init: float = 0.0
    # Decoding, recorded with the recipe so every ranking of this policy decodes it alike: prompts per request,
    # one per recent history item, merged with weight anchor_decay ** distance (recast.anchors; 1: off).
    anchors: int = 1
    anchor_decay: float = 0.5
    # The served ranking: True trains a learned ranker over the transition and text scorers' candidates with the
    # policy (recast.ranker, learner.ranker_trainer) and serves it with the policy's beam blended in; False
    # serves the fixed mix of the three (recast.fusion).
    ranker: bool = False
    # The share of the items the ranker's folds hide from their counts as if added online (RankerConfig.new_share),
    # so it learns how an item with text and no counts is bought. 0: a ranker that never saw one.
    ranker_new_share: float = 0.0
    # > 0: a residual policy (a product of experts with the ranker). Each labelled window's true item is learnt
    # through ``policy logits + residual * log(teacher + residual_floor)`` per SID token, the teacher being the
    # ranker read out of fold on the window's row (learner.sft_trainer.out_of_fold_labels), so the policy learns
    # what the ranker misses rather than a copy of it, to be served multiplied with it (ops.experiments.residual
    # scores that offline; no engine serves it). 0: off (the teacher, if any, is a target to imitate). Off in every
    # preset: the product lost 0.006-0.033 HR@10 to the served ranking on the tuning scope, whatever its power,
    # floor or epochs (BENCHMARKS.md, issue 15, thirteenth round).
    residual: float = 0.0
    residual_floor: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "n_layer", "max_history", "teacher_top_k", "item_teacher_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("distill_weight", "teacher_text_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1] (a share), got {getattr(self, name)}")
        if not 0 <= self.average_last <= self.epochs:
            raise ValueError(f"average_last must be in [0, epochs={self.epochs}], got {self.average_last}")
        if self.item_teacher_weight < 0:
            raise ValueError(f"item_teacher_weight must be >= 0 (0 turns it off), got {self.item_teacher_weight}")
        if self.short_context < 0 or self.short_context_weight < 0:
            raise ValueError("short_context and short_context_weight must be >= 0 (short_context 0 turns it off)")
        if self.pair_context_weight < 0:
            raise ValueError(f"pair_context_weight must be >= 0 (0 turns it off), got {self.pair_context_weight}")
        if self.pair_context_weight > 0 and (self.long_windows or self.short_context != 1 or self.max_history != 2
                                             or self.distill_weight == 0):  # fmt: skip
            raise ValueError("pair_context_weight trains a two-item prompt beside one-item windows, towards a teacher: "
                             "it needs short_context=1, long_windows=False, max_history=2 and distill_weight > 0 "
                             f"(got short_context={self.short_context}, long_windows={self.long_windows}, "
                             f"max_history={self.max_history}, distill_weight={self.distill_weight})")
        if not self.long_windows and not self.pair_context_weight and not 1 <= self.short_context == self.max_history:
            raise ValueError(
                "long_windows=False trains on short-context windows only: set short_context >= 1 and "
                f"max_history equal to it (got short_context={self.short_context}, max_history={self.max_history})"
            )
        if self.teacher_table < 0:
            raise ValueError(f"teacher_table must be >= 0 (0 turns it off), got {self.teacher_table}")
        if self.teacher_table and (self.long_windows or self.max_history != 1):
            raise ValueError("teacher_table is a one-item policy's objective: it needs max_history=1, short_context=1 "
                             f"and long_windows=False (got max_history={self.max_history}, "
                             f"long_windows={self.long_windows})")
        if self.teacher_history < 0 or (self.teacher_history and (self.long_windows or self.pair_context_weight
                                                                  or self.teacher_table)):  # fmt: skip
            raise ValueError("teacher_history labels short-context windows alone (long_windows=False, no pair "
                             f"windows, no teacher table) and must be >= 0, got {self.teacher_history}")
        # One-item windows trained as windows (not as the teacher table): what later_steps adds to and teacher_paths
        # draws for.
        one_item_windows = self.max_history == 1 and not self.long_windows and not self.teacher_table
        if self.teacher_paths and (not one_item_windows or self.distill_weight == 0):
            raise ValueError("teacher_paths draws one-item windows' targets from their teacher mixture: it needs "
                             "max_history=1, long_windows=False, no teacher table and distill_weight > 0 (got "
                             f"max_history={self.max_history}, long_windows={self.long_windows}, "
                             f"teacher_table={self.teacher_table}, distill_weight={self.distill_weight})")
        if self.later_steps < 0 or self.later_weight < 0:
            raise ValueError(
                f"later_steps and later_weight must be >= 0, got {self.later_steps} and {self.later_weight}"
            )
        if self.later_steps and not one_item_windows:
            raise ValueError("later_steps adds one-item windows to a one-item policy: it needs max_history=1, "
                             f"long_windows=False and no teacher table (got max_history={self.max_history}, "
                             f"long_windows={self.long_windows}, teacher_table={self.teacher_table})")
        if self.teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {TEACHERS}, got {self.teacher!r}")
        if self.teacher == "ranker" and not self.ranker:
            # The nightly refresh relabels its windows with the checkpoint's ranker, so the checkpoint must hold it.
            raise ValueError("teacher='ranker' needs ranker=True: the teaching ranker must be saved and served too")
        if not 0.0 <= self.ranker_new_share < 1.0:
            raise ValueError(f"ranker_new_share must be in [0, 1), got {self.ranker_new_share}")
        if self.text_init < 0:
            raise ValueError(f"text_init must be >= 0 (0 turns it off), got {self.text_init}")
        if self.anchors < 1 or not 0.0 < self.anchor_decay <= 1.0:
            raise ValueError(
                f"anchors must be >= 1 and anchor_decay in (0, 1], got {self.anchors} and {self.anchor_decay}"
            )
        if self.residual < 0 or self.residual_floor <= 0:
            raise ValueError(f"residual must be >= 0 and residual_floor > 0, got {self.residual} and "
                             f"{self.residual_floor}")  # fmt: skip
        if self.residual and (self.teacher != "ranker" or not self.teacher_history or self.item_teacher_weight
                              or self.teacher_paths or self.distill_weight):  # fmt: skip
            raise ValueError("residual multiplies the policy with the ranker read on each window's row: it needs "
                             "teacher='ranker', teacher_history > 0, and no target from the teacher "
                             "(distill_weight=0, item_teacher_weight=0, teacher_paths=False)")
        if self.teacher_sharpness <= 0:
            raise ValueError(
                f"teacher_sharpness must be > 0 (1 keeps the mixed scores' proportions), got {self.teacher_sharpness}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, SFTConfig] = {
    # Seconds on one core: for tests and smoke runs, not for quality.
    "tiny": SFTConfig(n_layer=1, n_head=2, d_model=32, d_ff=64, dropout=0.0, epochs=2, batch_size=128),
    # The demo's and the service's policy (issue 15); five to seven minutes on one shared core. The prompt is the
    # last item alone and every window is cut to it, so the input cannot name a user and training can run long
    # without dropout: it learns what follows each item, the transition counts' signal, with the SID tokens
    # sharing it between similar items. The teacher labels each training window, with 0.8 of the target's weight
    # (0.5 scored 0.010 HR@10 lower on the tuning users), and every catalog item alone, which hands the policy
    # the text scorer's knowledge and items never seen as a target. The teacher is the learned ranker over the
    # transition and text scorers (recast.ranker) at its own proportions (sharpness 1); the fixed mix of the two
    # at sharpness 6 taught 0.002 less on the tuning users' mean of HR@10 and NDCG@10, the ranker at sharpness 6
    # far less. The ranker also serves, with the policy's beam blended in. Chosen on the inner tuning users;
    # the held-out figures are in BENCHMARKS.md (issue 15). The ranker's folds hide a tenth of the items as if
    # added online: on the cold-start split's first seed it served the most rows, old and new targets together;
    # the other seeds confirmed +0.019 HR@10 on new items and a tie elsewhere (issue 16). Decoded once per each of
    # the last five items (recast.anchors, decay 0.5): the best of 28 settings on the tuning users, +0.011 HR@10 for
    # the policy alone, with the served ranking where it was; the service's cache of beams makes the five prompts
    # cheaper than one was without it (BENCHMARKS.md, issue 15, seventh and eighth rounds). The teacher labels
    # each window from its row's last 10 items (teacher_history), as the ranker serves: under five anchors that
    # led the tuning users' mean of HR@10 and NDCG@10 by 0.004 at the same cost (eighth round).
    "default": SFTConfig(short_context=1, max_history=1, long_windows=False, epochs=24, dropout=0.0,
                         distill_weight=0.8, teacher_sharpness=1.0, item_teacher_weight=0.5, ranker=True,
                         teacher="ranker", ranker_new_share=0.1, anchors=5, teacher_history=10),
    # The same without the teacher (HR@10 0.130 / NDCG@10 0.104 held out): half the training time.
    "last-item": SFTConfig(short_context=1, max_history=1, long_windows=False, epochs=24, dropout=0.0),
    # The former default: prompts of up to 10 items, 8 epochs, dropout 0.2 (chosen by the preset sweep of
    # issue 3). Issue 12's RL experiments start from it (`make experiment`), with rates tuned for it.
    "long-context": SFTConfig(),
}


def preset(name: str) -> SFTConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def item_paths(trie: ItemTrie, codes: torch.Tensor) -> torch.Tensor:
    """(N, L): the trie node *before* each token of each item's code (root first)."""
    N, L = codes.shape
    paths = torch.full((N, L), ROOT, dtype=torch.long)
    nodes = torch.full((N,), ROOT, dtype=torch.long)
    for level in range(L):
        paths[:, level] = nodes
        _, next_node = trie.expand(nodes)
        nodes = next_node.gather(1, codes[:, level : level + 1]).squeeze(1)
    return paths


@dataclass
class Batch:
    idx: torch.Tensor  # (B, T) inputs: [BOS] + item tokens, right-padded
    targets: torch.Tensor  # (B, T) the next token at each input position
    weights: torch.Tensor  # (B, T) the window weight of the item each target belongs to
    nodes: torch.Tensor  # (B, T) trie node each target is decoded from (dead on padding)
    soft: torch.Tensor | None = None  # (B, T, V) target distributions (distillation), None: the true token
    prior: torch.Tensor | None = None  # (B, T, V) added to the logits in the loss (SFTConfig.residual), None: nothing


def make_batch(
    sequences: list[Sequence],
    codes: torch.Tensor,
    paths: torch.Tensor,
    bos_id: int,
    pad_id: int,
    dead: int,
    soft: torch.Tensor | None = None,
    prior: torch.Tensor | None = None,
) -> Batch:
    """Right-padded inputs and targets; ``soft`` (B, T, V) from ``recast.distill.batch_soft_targets``
    replaces the one-hot targets where given; ``prior`` (B, T, V) from ``recast.distill.batch_log_prior`` is
    added to the logits in the loss."""
    L = codes.shape[1]
    T = max(len(s.items) for s in sequences) * L
    B = len(sequences)
    idx = torch.full((B, T), pad_id, dtype=torch.long)
    targets = torch.full((B, T), pad_id, dtype=torch.long)
    weights = torch.zeros(B, T)
    nodes = torch.full((B, T), dead, dtype=torch.long)
    for row, seq in enumerate(sequences):
        items = torch.tensor(seq.items, dtype=torch.long)
        n = len(seq.items) * L
        tokens = codes[items].reshape(-1)
        idx[row, 0] = bos_id
        idx[row, 1:n] = tokens[:-1]
        targets[row, :n] = tokens
        weights[row, :n] = torch.tensor(seq.weights).repeat_interleave(L)
        nodes[row, :n] = paths[items].reshape(-1)
    return Batch(idx, targets, weights, nodes, soft, prior)


def batch_loss(
    model: SidPolicy, batch: Batch, trie: ItemTrie, constrained: bool, scale: float | None = None
) -> torch.Tensor:
    """Weighted token NLL. ``scale`` None: divided by this batch's total weight (a per-batch mean);
    a number: divided by it, so a window's weight counts the same in whatever batch it lands."""
    logits = model(batch.idx)  # (B, T, V)
    if batch.prior is not None:  # the product with the teacher is what is fitted (SFTConfig.residual)
        logits = logits + batch.prior
    allowed = None
    if constrained:
        allowed, _ = trie.expand(batch.nodes.reshape(-1))
        allowed = allowed.view(*batch.nodes.shape, -1)
    if batch.soft is not None:
        nll = soft_token_nll(logits, batch.soft, allowed)
    else:
        nll = token_nll(logits, batch.targets, allowed)
    if scale is None:
        return weighted_mean(nll, batch.weights)
    return (nll * batch.weights).sum() / scale


def epoch_batches(lengths: list[int], batch_size: int, generator: torch.Generator, pool: int = 0) -> list[list[int]]:
    """One epoch's batches of sequence indices, in a random order drawn from ``generator``.

    ``pool`` 0: consecutive slices of one permutation. ``pool`` > 0: each run of ``pool`` batches'
    worth of the permutation is sorted by length before it is cut, and the batches are then shuffled,
    so sequences of similar length share a batch: with short-context windows beside 11-item rows,
    padding would otherwise be most of the compute.

    >>> epoch_batches([5, 1, 5, 1], 2, torch.Generator().manual_seed(0), pool=2)
    [[1, 3], [0, 2]]
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if pool == 0:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches = []
    for start in range(0, len(order), pool * batch_size):
        run = sorted(order[start : start + pool * batch_size], key=lambda j: lengths[j])
        batches += [run[i : i + batch_size] for i in range(0, len(run), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def learning_rate(step: int, total_steps: int, config: SFTConfig) -> float:
    """Linear warm-up, then cosine decay to ``lr * min_lr_ratio``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
    floor = config.lr * config.min_lr_ratio
    return floor + 0.5 * (config.lr - floor) * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: SidPolicy, config: SFTConfig) -> torch.optim.Optimizer:
    # No weight decay on norms and embeddings (the nanoGPT split: decay 2-D matmul weights only).
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98))


def train_step(
    model: SidPolicy,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    trie: ItemTrie,
    config: SFTConfig,
    lr: float,
    scale: float | None = None,
) -> tuple[float, float]:
    """One optimiser step; returns (loss, gradient norm before clipping). ``scale``: see ``batch_loss``."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = batch_loss(model, batch, trie, config.constrained_loss, scale)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return loss.item(), grad_norm.item()
