"""The SFT loop: data -> policy checkpoint, with progress, resume and a manifest.

Determinism: the initial weights come from ``seed``; every epoch reseeds the
shuffle and dropout from ``(seed, epoch)``, so a run resumed after any finished
epoch ends bit-identical to one that never stopped. Resume state
(``train_state.pt``: weights, optimiser, epoch, losses) is replaced atomically
after every epoch, and removed once the checkpoint is complete.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from learner.ranker_trainer import fit_served_ranker, user_fold
from recast.baselines import TransitionModel
from recast.catalog import Catalog
from recast.checkpoint import load_checkpoint, save_checkpoint
from recast.dataset import fingerprint, load_catalog, load_interactions
from recast.distill import (
    TableConfig,
    TeacherLabels,
    batch_log_prior,
    batch_soft_targets,
    item_teacher_sequences,
    label_sequences,
    ranker_teacher_scores,
    sample_paths,
    teacher_scores,
    teacher_table_sequences,
)
from recast.model import PolicyConfig, SidPolicy
from recast.ranker import Ranker, RankerConfig
from recast.sft import SFTConfig, epoch_batches, item_paths, learning_rate, make_batch, make_optimizer, train_step
from recast.text import TextModel, item_text
from recast.text_init import add_text_to_embeddings, item_vectors
from recast.tokenizer import SidTokenizer
from recast.trie import ItemTrie
from recast.windows import Sequence, build_sequences, later_sequences, short_context_sequences

log = logging.getLogger(__name__)
STATE_FILE = "train_state.pt"
SOURCE_HISTORY = 50  # the longest row history read when training on cut windows only


@dataclass
class SFTResult:
    checkpoint: Path | None  # None while epochs remain (see ``epoch_budget``)
    losses: list[float]  # mean training loss per epoch
    seconds: float
    num_parameters: int
    num_windows: int


def policy_config(config: SFTConfig, vocab_size: int, code_length: int) -> PolicyConfig:
    return PolicyConfig(
        vocab_size=vocab_size,
        n_layer=config.n_layer,
        n_head=config.n_head,
        d_model=config.d_model,
        d_ff=config.d_ff,
        dropout=config.dropout,
        max_positions=(config.max_history + 1) * code_length + 1,
    )


@dataclass
class TrainingData:
    """Everything a run derives from the data before the first step."""

    catalog: Catalog
    rows: int
    sequences: list[Sequence]  # the rows' windows, then the short-context windows (if configured)
    num_windows: int  # counted windows of the rows alone
    tokenizer: SidTokenizer
    codes: torch.Tensor  # (N, L)
    trie: ItemTrie
    paths: torch.Tensor  # (N, L)
    transition: TransitionModel
    text: TextModel
    labels: TeacherLabels | None  # the teacher's labels when distilling
    ranker: Ranker | None  # the learned ranker, where the recipe serves it (and perhaps distils it)


def ranker_config(config: SFTConfig) -> RankerConfig:
    """The learned ranker a recipe trains: the ranker's tuned settings, seeded with the run."""
    return RankerConfig(seed=config.seed, new_share=config.ranker_new_share)


def scorer_source(config: SFTConfig) -> int:
    """How much of each row the transition counts read: the prompt's cut for a policy trained on whole rows."""
    return config.max_history if config.long_windows else SOURCE_HISTORY


def prepare_data(data_dir: Path, train_csv: Path, config: SFTConfig, progress: bool = False) -> TrainingData:
    catalog = load_catalog(data_dir)
    rows = load_interactions(train_csv, catalog)
    if not rows:
        raise ValueError(f"{train_csv}: no interaction rows to train on")
    # Rows are read whole (up to SOURCE_HISTORY items) when only their cut windows are trained on.
    windows = build_sequences(rows, catalog.index, scorer_source(config))
    tokenizer = SidTokenizer.from_catalog(catalog)
    codes = tokenizer.item_codes(catalog)
    trie = ItemTrie.build(codes, len(tokenizer))
    # The scorers are fitted on the rows' windows first: the served mix uses them, and so does the teacher.
    transition = TransitionModel.fit(windows, len(catalog))
    text = TextModel.fit([item_text(item) for item in catalog.items])
    num_windows = int(sum(sum(s.weights) for s in windows))
    sequences = windows if config.long_windows else []
    if config.short_context > 0:
        sequences = sequences + short_context_sequences(windows, config.short_context, config.short_context_weight)
    if config.pair_context_weight > 0:
        sequences = sequences + short_context_sequences(windows, 2, config.pair_context_weight, full=True)
    ranker = None
    if config.ranker:  # before the labels: it may be the teacher
        ranker = fit_served_ranker(rows, catalog.index, text, ranker_config(config), scorer_source(config),
                                   progress=progress)  # fmt: skip
    if config.residual > 0:  # the teacher is read out of fold: the policy learns what it misses on a new user
        sequences, labels = out_of_fold_labels(windows, text, config, ranker, progress)
        if config.later_steps > 0:
            extra = later_sequences(windows, config.later_steps, config.later_weight)
            sequences, labels = sequences + extra, replace(labels, rows=labels.rows + tuple((-1, -1) for _ in extra))
    elif config.teacher_table > 0:  # the table holds the made-up pairs too
        sequences, labels = table_sequences(sequences, transition, text, config, progress, ranker), None
    else:
        if config.teacher_history > 0:
            labels = row_teacher_labels(windows, sequences, transition, text, config, progress, ranker)
        else:
            labels = teacher_labels(sequences, transition, text, config, progress, ranker)
        # After the labels, and without teacher rows: the made-up pairs are the teacher's own, not windows for it to
        # relabel, and the later windows learn their true items alone (the teacher's labels are about the next item).
        extra = []
        if config.item_teacher_weight > 0:
            extra += item_teacher_sequences(teacher_function(transition, text, config, ranker), len(catalog),
                                            config.item_teacher_k, config.teacher_sharpness,
                                            config.item_teacher_weight)  # fmt: skip
        if config.later_steps > 0:
            extra += later_sequences(windows, config.later_steps, config.later_weight)
        sequences = sequences + extra
        if labels is not None:
            labels = replace(labels, rows=labels.rows + tuple((-1, -1) for _ in extra))
    return TrainingData(
        catalog, len(rows), sequences, num_windows, tokenizer, codes, trie, item_paths(trie, codes),
        transition, text, labels, ranker,
    )  # fmt: skip


def train_sft(
    data_dir: Path,
    train_csv: Path,
    config: SFTConfig,
    out: Path,
    progress: bool = True,
    epoch_budget: int | None = None,
    init_from: Path | None = None,
) -> SFTResult:
    """Train on every row of ``train_csv`` (and the windows inside its histories).

    ``epoch_budget`` caps the epochs run by this call (a time-boxed job): the
    resume state is kept and a later call with the same arguments carries on.
    ``init_from``: a checkpoint whose weights start the run instead of a fresh
    init (more epochs of a trained policy on new rows; the nightly refresh has its own, in-memory
    loop, ``learner.refresh.learn.continue_sft``); its catalog and architecture must match.
    """
    started = time.perf_counter()
    data = prepare_data(data_dir, train_csv, config, progress)
    model, init_version = _initial_model(data, config, init_from)
    optimizer = make_optimizer(model, config)
    out.mkdir(parents=True, exist_ok=True)
    start_epoch, losses, average = _resume(out / STATE_FILE, model, optimizer, config, init_version)
    stop = config.epochs if epoch_budget is None else min(config.epochs, start_epoch + epoch_budget)
    for epoch in range(start_epoch, stop):
        losses.append(_run_epoch(model, optimizer, data, config, epoch, progress))
        log.info("epoch %d/%d loss %.4f", epoch + 1, config.epochs, losses[-1])
        average = _fold_average(average, model, epoch, config)
        _save_state(out / STATE_FILE, model, optimizer, config, epoch + 1, losses, init_version, average)

    if stop < config.epochs:
        return SFTResult(None, losses, time.perf_counter() - started, model.num_parameters(), data.num_windows)
    if average is not None:
        model.load_state_dict(average)
    model.eval()
    manifest = {
        "kind": "sft",
        "sft_config": config.to_dict(),
        "init_from": init_version,
        "data": {
            "catalog_fingerprint": fingerprint([data_dir / "items.json", data_dir / "sid_index.json"]),
            "train_file": train_csv.name,
            "train_fingerprint": fingerprint([train_csv]),
            "rows": data.rows,
            "windows": data.num_windows,
        },
        "metrics": {"train_loss": losses},
        **({"ranker_config": asdict(ranker_config(config))} if data.ranker is not None else {}),
    }
    # The resume state stays until the checkpoint is complete (a crash while saving resumes), then goes.
    save_checkpoint(out, model, data.tokenizer, data.catalog, data.transition, data.text, manifest,
                    transient=(STATE_FILE,), ranker=data.ranker)  # fmt: skip
    (out / STATE_FILE).unlink(missing_ok=True)
    return SFTResult(out, losses, time.perf_counter() - started, model.num_parameters(), data.num_windows)


def _initial_model(data: TrainingData, config: SFTConfig, init_from: Path | None) -> tuple[SidPolicy, str | None]:
    torch.manual_seed(config.seed)
    model = SidPolicy(policy_config(config, len(data.tokenizer), data.catalog.code_length))
    if init_from is not None:
        ckpt = load_checkpoint(init_from)
        if ckpt.item_ids != [item.item_id for item in data.catalog.items]:
            raise ValueError(f"{init_from} was trained on another catalog; start a fresh run instead")
        if ckpt.model.config != replace(model.config, dropout=ckpt.model.config.dropout):
            raise ValueError(f"{init_from} has another architecture ({ckpt.model.config}); match the config to it")
        model.load_state_dict(ckpt.model.state_dict())
        return model, ckpt.version
    if config.text_init > 0:
        vectors = item_vectors(data.text, config.d_model, torch.Generator().manual_seed(config.seed))
        add_text_to_embeddings(model, data.codes, vectors, config.text_init)
    return model, None


def _run_epoch(model, optimizer, data: TrainingData, config: SFTConfig, epoch: int, progress: bool) -> float:
    """One pass over every sequence; returns the mean batch loss."""
    torch.manual_seed(config.seed * 100_003 + epoch)  # dropout stream of this epoch
    generator = torch.Generator().manual_seed(config.seed + epoch)
    batches = epoch_batches([len(s.items) for s in data.sequences], config.batch_size, generator, config.length_pool)
    scale = None
    if config.fixed_loss_scale:
        scale = sum(sum(s.weights) for s in data.sequences) * data.codes.shape[1] / len(batches)
    model.train()
    with tqdm(total=len(batches), desc=f"sft epoch {epoch + 1}/{config.epochs}", disable=not progress,
              leave=False) as bar:  # fmt: skip
        losses = train_batches(model, optimizer, batches, data.sequences, data.labels, data.codes, data.paths,
                               data.tokenizer, data.trie, config, epoch * len(batches), len(batches) * config.epochs,
                               scale, bar)  # fmt: skip
    return sum(losses) / len(batches)


def train_batches(model, optimizer, batches: list[list[int]], sequences: list[Sequence], labels: TeacherLabels | None,
                  codes: torch.Tensor, paths: torch.Tensor, tokenizer: SidTokenizer, trie: ItemTrie, config: SFTConfig,
                  first_step: int, total_steps: int, scale: float | None = None, bar=None) -> list[float]:  # fmt: skip
    """One optimiser step per batch of ``sequences`` positions, towards the true items, or towards the teacher's
    mixture where ``labels`` are given; the learning rate follows ``config``'s schedule from ``first_step`` of
    ``total_steps``. Returns each step's loss. The initial SFT (:func:`_run_epoch`) and the nightly refresh's
    continued SFT (``learner.refresh.learn``) both step through here; they differ in how they batch and seed."""
    losses = []
    # Where the targets' paths are drawn (SFTConfig.teacher_paths), the draws follow the run's seed and first step.
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + first_step)
    for i, picked in enumerate(batches):
        chunk = [sequences[j] for j in picked]
        soft = prior = None
        rows = None if labels is None else [labels.rows[j] for j in picked]
        if labels is not None and config.residual > 0:
            prior = batch_log_prior(chunk, rows, labels, codes, len(tokenizer), config.residual, config.residual_floor)
        elif labels is not None:
            drawn = None
            if config.teacher_paths:
                drawn = sample_paths(chunk, rows, labels, config.distill_weight, generator)
            soft = batch_soft_targets(chunk, rows, labels, codes, config.distill_weight, len(tokenizer),
                                      1.0 if config.pair_context_weight > 0 else None, drawn)  # fmt: skip
            if drawn is not None:  # teacher forcing follows the drawn items
                chunk = [replace(seq, items=items) for seq, items in zip(chunk, drawn, strict=True)]
        batch = make_batch(chunk, codes, paths, tokenizer.bos_id, tokenizer.pad_id, trie.dead, soft, prior)
        loss, _ = train_step(model, optimizer, batch, trie, config, learning_rate(first_step + i, total_steps, config),
                             scale)  # fmt: skip
        losses.append(loss)
        if bar is not None:
            bar.update()
            bar.set_postfix(loss=f"{loss:.3f}")
    return losses


def teacher_function(transition: TransitionModel, text: TextModel, config: SFTConfig, ranker: Ranker | None = None):
    """The distillation teacher ``config`` names, as a function of a batch of contexts -> (B, N) scores."""
    if config.teacher == "ranker":
        if ranker is None:
            raise ValueError("this recipe distils the learned ranker (teacher='ranker'): pass the fitted ranker")
        return lambda contexts: ranker_teacher_scores(transition, text, ranker, contexts)
    return lambda contexts: teacher_scores(transition, text, contexts, config.teacher_text_weight)


def table_sequences(
    windows: list[Sequence], transition: TransitionModel, text: TextModel, config: SFTConfig, progress: bool = False,
    ranker: Ranker | None = None,
) -> list[Sequence]:  # fmt: skip
    """The one-item objective ``config`` names as a table of whole-item pairs (``SFTConfig.teacher_table``)."""
    num_items = text.num_items
    with tqdm(total=num_items, desc="teacher table", disable=not progress, leave=False) as bar:
        return teacher_table_sequences(windows, teacher_function(transition, text, config, ranker), num_items,
                                       table_config(config), on_chunk=bar.update)  # fmt: skip


def table_config(config: SFTConfig, keep: int | None = None) -> TableConfig:
    """The terms of ``config``'s one-item objective, each item's best ``keep`` (default ``teacher_table``)."""
    return TableConfig(alpha=config.distill_weight, top_k=config.teacher_top_k, sharpness=config.teacher_sharpness,
                       item_weight=config.item_teacher_weight, item_k=config.item_teacher_k,
                       keep=config.teacher_table if keep is None else keep)  # fmt: skip


def teacher_labels(
    sequences, transition: TransitionModel, text: TextModel, config: SFTConfig, progress: bool = False,
    ranker: Ranker | None = None,
) -> TeacherLabels | None:  # fmt: skip
    """The distillation teacher's labels for ``sequences`` under ``config`` (None: it does not distil). The
    nightly refresh labels its windows with this too, so both train towards one teacher."""
    if config.distill_weight == 0 and config.residual == 0:
        return None
    contexts = len({s.items[:j] for s in sequences for j in range(1, len(s.items)) if s.weights[j] > 0})
    with tqdm(total=contexts, desc="teacher labels", disable=not progress, leave=False) as bar:
        return label_sequences(sequences, teacher_function(transition, text, config, ranker), config.teacher_top_k,
                               config.teacher_sharpness, on_chunk=bar.update)  # fmt: skip


def row_teacher_labels(
    windows, sequences, transition: TransitionModel, text: TextModel, config: SFTConfig, progress: bool = False,
    ranker: Ranker | None = None,
) -> TeacherLabels | None:  # fmt: skip
    """The teacher's labels for ``sequences``, the counted windows of ``windows`` cut to the prompt
    (``short_context_sequences(windows, config.short_context, ...)``), each read by the teacher from up to
    ``config.teacher_history`` items of its row. The same windows in the same order are cut to that many items
    for the teacher, and each label row goes to its window's target position. The nightly refresh labels its
    windows with this too."""
    views = short_context_sequences(windows, config.teacher_history, config.short_context_weight)
    labels = teacher_labels(views, transition, text, config, progress, ranker)
    if labels is None:
        return None
    targets = ((-1,) * (len(s.items) - 1) + (r[-1],) for s, r in zip(sequences, labels.rows, strict=True))
    return replace(labels, rows=tuple(targets))


def out_of_fold_labels(windows: list[Sequence], text: TextModel, config: SFTConfig, ranker: Ranker,
                       progress: bool = False) -> tuple[list[Sequence], TeacherLabels]:  # fmt: skip
    """The short-context windows of ``windows`` (grouped by user fold) and the teacher's labels for them, each fold's
    rows read by the ranker over transition counts from the other folds' rows only (the folds the ranker's own
    features come from, :func:`learner.ranker_trainer.out_of_fold`). Counted from every row, the teacher would
    already hold each window's own next item, and a policy fitted as a product with it would learn nothing there."""
    folds = ranker_config(config).folds
    fold = [user_fold(w.user_id, folds, config.seed) for w in windows]
    sequences: list[Sequence] = []
    items, probs, rows = [], [], []
    for k in range(folds):
        inside = [w for w, f in zip(windows, fold) if f == k]
        if not inside:
            continue
        counts = TransitionModel.fit([w for w, f in zip(windows, fold) if f != k], text.num_items)
        cut = short_context_sequences(inside, config.short_context, config.short_context_weight)
        labels = row_teacher_labels(inside, cut, counts, text, config, progress, ranker)
        offset = sum(len(i) for i in items)
        rows += [tuple(r + offset if r >= 0 else -1 for r in row) for row in labels.rows]
        items.append(labels.items)
        probs.append(labels.probs)
        sequences += cut
    return sequences, TeacherLabels(torch.cat(items), torch.cat(probs), tuple(rows))


def _fold_average(average: dict | None, model, epoch: int, config: SFTConfig) -> dict | None:
    """The running mean of the weights at the end of the last ``average_last`` epochs (None before them)."""
    first = config.epochs - config.average_last
    if config.average_last < 2 or epoch < first:
        return None
    current = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if average is None:
        return current
    n = epoch - first + 1  # epochs in the mean after this one
    return {k: average[k] + (current[k] - average[k]) / n for k in current}


def _save_state(
    path: Path,
    model,
    optimizer,
    config: SFTConfig,
    epoch: int,
    losses: list[float],
    init: str | None,
    average: dict | None,
) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "losses": losses,
            "config": config.to_dict(),
            "init_from": init,
            "average": average,
        },
        tmp,
    )
    os.replace(tmp, path)


def _resume(path: Path, model, optimizer, config: SFTConfig, init: str | None) -> tuple[int, list[float], dict | None]:
    if not path.is_file():
        return 0, [], None
    state = torch.load(path, weights_only=True)
    if state["config"] != config.to_dict() or state.get("init_from") != init:
        raise ValueError(
            f"{path} was written by a run with another configuration; "
            "use a fresh --out directory or delete the file to start over"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log.info("resuming after epoch %d", state["epoch"])
    return state["epoch"], list(state["losses"]), state.get("average")
