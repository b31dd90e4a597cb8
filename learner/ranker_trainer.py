"""Training the served ranking's learned ranker (:mod:`recast.ranker`) on out-of-fold features.

The rows' users are split into ``config.folds`` folds by a seeded hash. Each fold's rows are described by a
transition model counted from the other folds' rows only, so a candidate's counts are what they would be for a
user the model has never seen, as every served user is. (Counted from all rows, a row's own next item would
always lead the counts, and the ranker would learn to trust them far more than a new user's counts deserve.)
The text scorer reads the catalog alone, so it is shared by every fold.

Each fold also hides ``config.new_share`` of the items from its counts and marks them added
(``TransitionModel.forgetting``): a row whose target is one of them is what a shopper buying an item added online
looks like, text and no counts, so the ranker learns when such an item is worth a place (issue 16).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from recast.baselines import TransitionModel
from recast.dataset import Interaction
from recast.ranker import Ranker, RankerConfig, candidates, fit_ranker
from recast.text import TextModel
from recast.windows import build_sequences

log = logging.getLogger(__name__)

CHUNK = 256  # rows described at once


def user_fold(user_id: str, folds: int, seed: int) -> int:
    """The fold of a user: stable across runs, machines and row order.

    >>> user_fold("A4042", 5, 0) == user_fold("A4042", 5, 0), 0 <= user_fold("A4042", 5, 0) < 5
    (True, True)
    """
    return int(hashlib.sha256(f"{seed}:{user_id}".encode()).hexdigest(), 16) % folds


def hidden_items(num_items: int, share: float, seed: int, fold: int) -> torch.Tensor:
    """The items a fold's counts hide and mark added: a seeded sample of ``share`` of the catalog, its own per fold.

    >>> hidden_items(100, 0.1, 0, 0).shape, bool((hidden_items(100, 0.1, 0, 0) != hidden_items(100, 0.1, 0, 1)).any())
    (torch.Size([10]), True)
    """
    generator = torch.Generator().manual_seed(seed * 1_000 + fold)
    return torch.randperm(num_items, generator=generator)[: round(share * num_items)]


def added_online(counts: TransitionModel, config: RankerConfig, fold: int) -> TransitionModel:
    """A fold's counts with ``config.new_share`` of the items hidden and ``config.young_share`` more thinned to a
    few counts, all marked added: what a served model holds of items added online, before anyone bought them and
    after a few did. The hidden items are the same with or without a young share."""
    if config.new_share == 0 and config.young_share == 0:
        return counts
    num_items = counts.popularity.shape[0]
    chosen = hidden_items(num_items, config.new_share + config.young_share, config.seed, fold)
    hidden = round(config.new_share * num_items)
    if hidden:
        counts = counts.forgetting(chosen[:hidden])
    young = chosen[hidden:]
    if young.numel():
        generator = torch.Generator().manual_seed(config.seed * 1_000 + fold)
        keep = torch.randint(1, config.young_until, (young.numel(),), generator=generator)
        counts = counts.thinning(young, keep, config.seed * 1_000 + fold)
    return counts


def fit_served_ranker(
    rows: Sequence[Interaction],
    position: dict[str, int],
    text: TextModel,
    config: RankerConfig,
    source_history: int,
    scorer_history: int = 10,
    progress: bool = False,
) -> Ranker:
    """The ranker for a policy trained on ``rows``. ``source_history``: how much of each row the transition counts
    read (the trainer's cut for the scorers); ``scorer_history``: how much of a history the served scorers read."""
    features, masks, targets = out_of_fold(rows, position, text, config, source_history, scorer_history, progress)
    log.info("ranker: %d of %d rows have their target among the candidates", len(targets), len(rows))
    return fit_ranker(features, masks, targets, config)


def out_of_fold(
    rows: Sequence[Interaction],
    position: dict[str, int],
    text: TextModel,
    config: RankerConfig,
    source_history: int,
    scorer_history: int = 10,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features (R, C, F), mask (R, C), target column (R,)) of the rows whose target is among their candidates,
    each row described by counts from the other folds."""
    folds = [user_fold(r.user_id, config.folds, config.seed) for r in rows]
    num_items = text.num_items
    features, masks, targets = [], [], []
    with tqdm(total=len(rows), desc="ranker features", unit="row", disable=not progress, leave=False) as bar:
        for fold in range(config.folds):
            inside = [r for r, f in zip(rows, folds) if f == fold]
            outside = [r for r, f in zip(rows, folds) if f != fold]
            if not inside:
                continue
            counts = added_online(TransitionModel.fit(build_sequences(outside, position, source_history), num_items),
                                  config, fold)  # fmt: skip
            for start in range(0, len(inside), CHUNK):
                chunk = inside[start : start + CHUNK]
                histories = [[position[i] for i in r.history][-scorer_history:] for r in chunk]
                cands = candidates(histories, counts, text, config.per_scorer)
                target = torch.tensor([position[r.target] for r in chunk]).unsqueeze(1)
                hit = cands.items == target
                found = hit.any(dim=1)
                features.append(cands.features[found])
                masks.append(cands.mask[found])
                targets.append(hit[found].long().argmax(dim=1))
                bar.update(len(chunk))
    return torch.cat(features), torch.cat(masks), torch.cat(targets)
