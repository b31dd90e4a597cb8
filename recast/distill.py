"""Distilling the count and text scorers into the policy: soft next-token targets on the true path.

The teacher is the served mix without the policy, ``(1 - wt) * transition / max + wt * text / max``
(``recast.fusion.mix_scorers``), or the learned ranker over the same two scorers' candidates
(:func:`ranker_teacher_scores`, ``SFTConfig.teacher``). It labels every training context with a distribution over its
top-k items, ``p_T(i) ∝ score(i) ** sharpness``. The policy is trained towards the mixture
``m = (1 - a) * δ(true item) + a * p_T``.

Cross-entropy to ``m`` over whole items splits over the code's levels:
``Σ_l E_{prefix ~ m} CE(m(· | prefix), π(· | prefix))``. Teacher forcing runs one prefix per window,
the true item's, so the loss keeps that path's terms: at level ``l`` the target is ``m``'s conditional
given the true prefix,

    m(v | true[:l]) ∝ (1 - a) * [v == true_l] + a * Σ_{i: code_i[:l] == true[:l], code_i[l] == v} p_T(i)

At level 0 that is the teacher's whole marginal over first tokens; deeper, the teacher's items that
share the true prefix (product variants share their first SID tokens). It costs no extra forward
pass: only the targets change, not the positions the loss reads.

That estimate keeps one prefix of the sum, the true item's, every epoch: below the first token, a teacher item
that does not share the true item's prefix is never taught there. With ``SFTConfig.teacher_paths`` the prefix is
instead drawn from ``m`` itself every epoch (:func:`sample_paths`): teacher forcing follows the drawn item, and the
targets are ``m``'s conditionals along it (``soft_targets``' ``path_codes``). The expectation over draws is the whole
sum above, so each window teaches its teacher's items at every level, at the same cost a step.

Why a teacher at all: the policy alone ranked below both scorers it is fused with (BENCHMARKS.md),
while it is the only part the RL learner and the nightly refresh can move. The teacher hands the
policy what counts over *other* users and item text know about each training context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from recast.baselines import TransitionModel
from recast.fusion import mix_scorers
from recast.ranker import Ranker, candidates
from recast.text import TextModel
from recast.windows import Sequence as TrainingSequence


@dataclass(frozen=True)
class TableConfig:
    """The one-item objective's terms (:func:`teacher_table_sequences`), as ``recast.sft.SFTConfig`` sets them."""

    alpha: float  # the teacher's share of each window's target (distill_weight)
    top_k: int  # the teacher's items per window (teacher_top_k)
    sharpness: float  # teacher probabilities ∝ score ** this
    item_weight: float  # the made-up pairs' weight per item (item_teacher_weight)
    item_k: int  # and their number (item_teacher_k)
    keep: int  # pairs kept per item, its best


@dataclass(frozen=True)
class TeacherLabels:
    """The teacher's top-k per labelled context (R rows) and, per training sequence, which row labels
    each of its positions (-1: the true item alone, e.g. the empty context or a repeated window)."""

    items: torch.Tensor  # (R, K) catalog positions, best first
    probs: torch.Tensor  # (R, K) teacher probabilities, each row sums to 1
    rows: tuple[tuple[int, ...], ...]  # per sequence, per position


def teacher_scores(
    transition: TransitionModel, text: TextModel | None, histories: Sequence[Sequence[int]], text_weight: float
) -> torch.Tensor:
    """(B, N) the teacher's scores for histories of catalog positions (already cut to the prompt length)."""
    trans = torch.stack([transition.scores(h) for h in histories])
    texts = None if text is None or text_weight == 0 else text.scores_batch(histories)
    return mix_scorers(trans, texts, 1.0 - text_weight, text_weight)


def ranker_teacher_scores(
    transition: TransitionModel, text: TextModel, ranker: Ranker, histories: Sequence[Sequence[int]]
) -> torch.Tensor:
    """(B, N) the learned ranker's probabilities over each history's candidates (0 elsewhere): a teacher that
    weighs the same two scorers as :func:`teacher_scores`, by what it learnt about them."""
    cands = candidates(histories, transition, text, ranker.per_scorer)
    return ranker.probabilities(cands, text.num_items)


def top_k_distribution(scores: torch.Tensor, k: int, sharpness: float) -> tuple[torch.Tensor, torch.Tensor]:
    """scores (B, N) non-negative -> items (B, k), probs (B, k) with ``probs ∝ score ** sharpness``
    over the k best. A row of zeros gets zero probabilities (no teacher opinion).

    >>> items, probs = top_k_distribution(torch.tensor([[0.1, 0.6, 0.3]]), 2, 1.0)
    >>> items.tolist(), [round(p, 4) for p in probs[0].tolist()]
    ([[1, 2]], [0.6667, 0.3333])
    """
    values, items = scores.topk(min(k, scores.shape[1]), dim=1)
    weights = values.clamp(min=0.0) ** sharpness
    total = weights.sum(dim=1, keepdim=True)
    return items, torch.where(total > 0, weights / total.clamp(min=1e-12), 0.0)


def _prefix_shares(codes: torch.Tensor, path: torch.Tensor) -> torch.Tensor:
    """(..., L) codes against (..., L) path -> 1.0 at level l where the codes agree with the path on levels < l."""
    same = (codes == path).float()
    return torch.cat((torch.ones_like(same[..., :1]), same[..., :-1].cumprod(dim=-1)), dim=-1)


def soft_targets(
    true_codes: torch.Tensor,
    teacher_codes: torch.Tensor,
    teacher_probs: torch.Tensor,
    alpha: torch.Tensor,
    vocab_size: int,
    path_codes: torch.Tensor | None = None,
) -> torch.Tensor:
    """The mixture's conditionals along the true path, or along ``path_codes`` (M, L) where teacher forcing
    follows another item (see the module doc).

    true_codes (M, L), teacher_codes (M, K, L), teacher_probs (M, K), alpha (M,) -> (M, L, V), each
    (m, l) row a distribution over tokens, or zeros where the mixture has no mass on the path's prefix (only
    with alpha 1, or a path the mixture does not hold). ``alpha`` 0 (or zero teacher probabilities, alpha < 1)
    on the true path gives the one-hot true token, i.e. plain SFT.
    """
    M, K, L = teacher_codes.shape
    path = true_codes if path_codes is None else path_codes
    shares = _prefix_shares(teacher_codes, path[:, None, :])  # (M, K, L)
    mass = (alpha[:, None] * teacher_probs)[:, :, None] * shares  # (M, K, L)
    out = torch.zeros(M, L, vocab_size)
    out.scatter_add_(2, teacher_codes.transpose(1, 2), mass.transpose(1, 2))  # (M, L, V)
    true_mass = (1.0 - alpha)[:, None] * _prefix_shares(true_codes, path)  # (M, L): the true item, where on the path
    out.scatter_add_(2, true_codes[:, :, None], true_mass[:, :, None].contiguous())
    total = out.sum(dim=2, keepdim=True)
    # A level where the mixture has no mass on the true path (alpha 1, the teacher elsewhere) teaches nothing: an
    # all-zero target costs nothing (recast.losses.soft_token_nll). The true token there would hand the policy the
    # true item that alpha 1 keeps from it.
    return torch.where(total > 0, out / total.clamp(min=1e-12), 0.0)


def label_sequences(
    sequences: Sequence[TrainingSequence],
    score: Callable[[list[tuple[int, ...]]], torch.Tensor],
    top_k: int,
    sharpness: float,
    chunk: int = 512,
    on_chunk: Callable[[int], None] | None = None,
) -> TeacherLabels:
    """Label every counted window with a non-empty context, each distinct context once.

    ``score`` maps a batch of contexts (catalog positions, oldest first) to (B, N) teacher scores, e.g.
    ``lambda h: teacher_scores(transition, text, h, 0.5)``. Sequences are already cut to the prompt
    length (``recast.windows.build_sequences``), so a context is a prefix of one.
    """
    index: dict[tuple[int, ...], int] = {}
    rows = []
    for seq in sequences:
        per_position = []
        for j, w in enumerate(seq.weights):
            if j == 0 or w <= 0:
                per_position.append(-1)
                continue
            per_position.append(index.setdefault(seq.items[:j], len(index)))
        rows.append(tuple(per_position))
    contexts = list(index)
    items, probs = [], []
    for start in range(0, len(contexts), chunk):
        batch = contexts[start : start + chunk]
        i, p = top_k_distribution(score(batch), top_k, sharpness)
        items.append(i)
        probs.append(p)
        if on_chunk is not None:
            on_chunk(len(batch))
    if not contexts:
        return TeacherLabels(torch.zeros(0, top_k, dtype=torch.long), torch.zeros(0, top_k), tuple(rows))
    return TeacherLabels(torch.cat(items), torch.cat(probs), tuple(rows))


def batch_soft_targets(
    sequences: Sequence[TrainingSequence],
    rows: Sequence[tuple[int, ...]],
    labels: TeacherLabels,
    codes: torch.Tensor,
    alpha: float,
    vocab_size: int,
    pair_alpha: float | None = None,
    paths: Sequence[tuple[int, ...]] | None = None,
) -> torch.Tensor:
    """(B, J * L, V) soft targets for a right-padded batch of sequences (J = the longest's items).

    ``rows[b]`` are the teacher rows of ``sequences[b]``'s positions. Padding positions get the
    one-hot of item 0's tokens; their loss weight is 0, so what they hold does not matter. ``pair_alpha``
    (None: ``alpha``) is the teacher's share after contexts of two items or more (``SFTConfig.pair_context_weight``).
    ``paths[b]``: the items teacher forcing follows in sequence b where they are not its own (:func:`sample_paths`).
    """
    B, J, L = len(sequences), max(len(s.items) for s in sequences), codes.shape[1]
    K = labels.items.shape[1]
    true = torch.zeros(B, J, dtype=torch.long)
    row = torch.full((B, J), -1, dtype=torch.long)
    for b, seq in enumerate(sequences):
        true[b, : len(seq.items)] = torch.tensor(seq.items)
        row[b, : len(seq.items)] = torch.tensor(rows[b])
    path_codes = None
    if paths is not None:
        path = true.clone()
        for b, items in enumerate(paths):
            path[b, : len(items)] = torch.tensor(items)
        path_codes = codes[path.reshape(-1)]
    has = row >= 0
    safe = row.clamp(min=0).reshape(-1)
    teacher_items = labels.items[safe] if labels.items.shape[0] else torch.zeros(B * J, K, dtype=torch.long)
    teacher_probs = labels.probs[safe] if labels.probs.shape[0] else torch.zeros(B * J, K)
    teacher_probs = torch.where(has.reshape(-1, 1), teacher_probs, 0.0)
    shares = torch.full((B, J), alpha)
    if pair_alpha is not None:
        shares[:, 2:] = pair_alpha
    a = torch.where(has, shares, 0.0).reshape(-1)
    out = soft_targets(codes[true.reshape(-1)], codes[teacher_items], teacher_probs, a, vocab_size, path_codes)
    return out.view(B, J * L, vocab_size)


def batch_log_prior(
    sequences: Sequence[TrainingSequence],
    rows: Sequence[tuple[int, ...]],
    labels: TeacherLabels,
    codes: torch.Tensor,
    vocab_size: int,
    weight: float,
    floor: float,
) -> torch.Tensor:
    """(B, J * L, V): ``weight * log(teacher + floor)`` per SID token along each labelled position's true path (the
    teacher's conditionals, :func:`batch_soft_targets` at share 1), 0 at unlabelled positions. Added to the policy's
    logits, the policy is fitted as a product with the teacher (``SFTConfig.residual``).

    >>> labels = TeacherLabels(torch.tensor([[1, 0]]), torch.tensor([[0.75, 0.25]]), ((-1, 0),))
    >>> seq = TrainingSequence("u", (0, 1), (0.0, 1.0))
    >>> prior = batch_log_prior([seq], labels.rows, labels, torch.tensor([[2], [3]]), 4, 1.0, 1e-3)
    >>> [round(x, 3) for x in prior[0, 1].exp().tolist()]  # the second position: item 1 (token 3) at 0.75
    [0.001, 0.001, 0.251, 0.751]
    >>> prior[0, 0].abs().sum().item()  # the first position has no label
    0.0
    """
    teacher = batch_soft_targets(sequences, rows, labels, codes, 1.0, vocab_size)
    L, J = codes.shape[1], teacher.shape[1] // codes.shape[1]
    labelled = torch.tensor([list(r) + [-1] * (J - len(r)) for r in rows]) >= 0  # (B, J)
    labelled = labelled.repeat_interleave(L, dim=1).unsqueeze(2)
    return torch.where(labelled, weight * torch.log(teacher + floor), 0.0)


def sample_paths(
    sequences: Sequence[TrainingSequence],
    rows: Sequence[tuple[int, ...]],
    labels: TeacherLabels,
    alpha: float,
    generator: torch.Generator,
) -> list[tuple[int, ...]]:
    """Per sequence, its items with every labelled position's item drawn from that position's mixture
    ``(1 - alpha) * δ(true) + alpha * p_T`` (the module doc): the path teacher forcing follows this epoch.
    Unlabelled positions keep their own item. Only a one-item context's label holds whatever came before it, so
    the caller draws for one-item windows (``SFTConfig.teacher_paths``).

    >>> labels = TeacherLabels(torch.tensor([[7, 8]]), torch.tensor([[0.0, 1.0]]), ((-1, 0),))
    >>> seq = TrainingSequence("u", (3, 4), (0.0, 1.0))
    >>> sample_paths([seq], labels.rows, labels, 1.0, torch.Generator().manual_seed(0))
    [(3, 8)]
    >>> sample_paths([seq], labels.rows, labels, 0.0, torch.Generator().manual_seed(0))
    [(3, 4)]
    """
    at = [(b, j, r) for b, rs in enumerate(rows) for j, r in enumerate(rs) if r >= 0]
    paths = [list(s.items) for s in sequences]
    if not at:
        return [tuple(p) for p in paths]
    label_rows = torch.tensor([r for _, _, r in at])
    probs = labels.probs[label_rows]
    total = probs.sum(dim=1)
    # A row without teacher mass keeps its true item; multinomial needs some mass in every row it draws from.
    teacher = torch.rand(len(at), generator=generator) < alpha * total.clamp(max=1.0)
    drawn = torch.multinomial(torch.where(total[:, None] > 0, probs, 1.0), 1, generator=generator).squeeze(1)
    items = labels.items[label_rows, drawn]
    for (b, j, _), use, item in zip(at, teacher.tolist(), items.tolist(), strict=True):
        if use:
            paths[b][j] = item
    return [tuple(p) for p in paths]


def item_teacher_sequences(
    score: Callable[[list[tuple[int, ...]]], torch.Tensor],
    num_items: int,
    top_k: int,
    sharpness: float,
    weight: float,
    chunk: int = 512,
) -> list[TrainingSequence]:
    """Made-up one-item histories: every catalog item followed by each of the teacher's top-k for it,
    the pair weighted ``weight * p_T``. Whole pairs are trained, so every level of the teacher's items
    is learnt (the soft targets above reach only the true item's path), and an item's text neighbours
    reach the policy even where no row ever led to them.

    >>> seqs = item_teacher_sequences(lambda c: torch.tensor([[0.0, 3.0, 1.0]] * len(c)), 2, 2, 1.0, 0.5)
    >>> [(s.items, s.weights) for s in seqs]
    [((0, 1), (0.0, 0.375)), ((0, 2), (0.0, 0.125)), ((1, 1), (0.0, 0.375)), ((1, 2), (0.0, 0.125))]
    """
    out = []
    for start in range(0, num_items, chunk):
        contexts = [(i,) for i in range(start, min(num_items, start + chunk))]
        items, probs = top_k_distribution(score(contexts), top_k, sharpness)
        for (x,), row_items, row_probs in zip(contexts, items.tolist(), probs.tolist()):
            out += [
                TrainingSequence("teacher", (x, y), (0.0, weight * p)) for y, p in zip(row_items, row_probs) if p > 0
            ]
    return out


def teacher_table_sequences(
    windows: Sequence[TrainingSequence],
    score: Callable[[list[tuple[int, ...]]], torch.Tensor],
    num_items: int,
    config: TableConfig,
    items: Sequence[int] | None = None,
    chunk: int = 512,
    on_chunk: Callable[[int], None] | None = None,
) -> list[TrainingSequence]:
    """The one-item objective written out as a table of whole items: for every catalog item ``x`` (or every one of
    ``items``, the rows a caller reads),

        O_x = n_x * ((1 - a) * E_x + a * T_x) + b * T'_x

    where ``n_x`` is how many counted windows end in ``x``, ``E_x`` their next items' distribution (the
    hard labels), ``T_x`` the teacher's top-``top_k`` for ``x`` and ``T'_x`` its top-``item_k`` (the
    made-up pairs of :func:`item_teacher_sequences`, weight ``b``). That is what the windows with their
    soft targets and the made-up pairs train a one-item policy towards together, in expectation. Here it
    becomes one pair ``(x, y)`` per item of ``O_x``'s ``keep`` best, weighted ``O_x(y)``.

    Why: the soft targets reach the teacher's items only along the true item's path (the module doc), so
    an item the teacher ranks high under another first token is learnt down to its first token only. The
    policy kept 6.7 of the objective's top 10 that way (BENCHMARKS.md, issue 15, sixth round); pairs
    train every level of every kept item, which is cross-entropy to ``O_x`` over whole items. Measured, it
    tied the windows at twice the training time: the policy underfits either way.

    ``windows`` must hold one-item contexts (``recast.windows.short_context_sequences(..., 1, w)``).

    >>> w = [TrainingSequence("u", (0, 1), (0.0, 1.0)), TrainingSequence("v", (0, 2), (0.0, 1.0))]
    >>> cfg = TableConfig(alpha=0.5, top_k=1, sharpness=1.0, item_weight=1.0, item_k=1, keep=2)
    >>> seqs = teacher_table_sequences(w, lambda c: torch.tensor([[0.0, 1.0, 3.0]] * len(c)), 3, cfg)
    >>> [(s.items, s.weights) for s in seqs]
    [((0, 2), (0.0, 2.5)), ((0, 1), (0.0, 0.5)), ((1, 2), (0.0, 1.0)), ((2, 2), (0.0, 1.0))]
    """
    following: dict[int, list[tuple[int, float]]] = {}  # x -> its windows' (next item, weight)
    for seq in windows:
        if len(seq.items) != 2:
            raise ValueError(f"the table is a one-item policy's objective: got a window of {len(seq.items) - 1} items")
        following.setdefault(seq.items[0], []).append((seq.items[1], seq.weights[1]))
    out = []
    rows = list(range(num_items)) if items is None else list(items)
    for start in range(0, len(rows), chunk):
        contexts = rows[start : start + chunk]
        scores = score([(x,) for x in contexts])
        hard = torch.zeros(len(contexts), num_items)  # one chunk of rows: the catalog squared would not fit
        for row, x in enumerate(contexts):
            for y, w in following.get(x, ()):
                hard[row, y] += w
        counts = hard.sum(dim=1, keepdim=True)  # n_x
        table = (1.0 - config.alpha) * hard  # n_x * E_x is the counts themselves
        for k, weight in ((config.top_k, config.alpha * counts), (config.item_k, config.item_weight)):
            items, probs = top_k_distribution(scores, k, config.sharpness)
            table.scatter_add_(1, items, weight * probs)
        values, items = table.topk(min(config.keep, num_items), dim=1)
        for x, row_items, row_values in zip(contexts, items.tolist(), values.tolist()):
            out += [TrainingSequence("table", (x, y), (0.0, v)) for y, v in zip(row_items, row_values) if v > 0]
        if on_chunk is not None:
            on_chunk(len(contexts))
    return out
