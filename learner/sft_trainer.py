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
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from recast.baselines import TransitionModel
from recast.checkpoint import save_checkpoint
from recast.dataset import fingerprint, load_catalog, load_interactions
from recast.distill import TeacherLabels, batch_soft_targets, label_sequences, teacher_scores
from recast.model import PolicyConfig, SidPolicy
from recast.sft import SFTConfig, item_paths, learning_rate, make_batch, make_optimizer, train_step
from recast.text import TextModel
from recast.text_init import add_text_to_embeddings, item_vectors
from recast.tokenizer import SidTokenizer
from recast.trie import ItemTrie
from recast.windows import build_sequences, short_context_sequences

log = logging.getLogger(__name__)
STATE_FILE = "train_state.pt"


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


def train_sft(
    data_dir: Path,
    train_csv: Path,
    config: SFTConfig,
    out: Path,
    progress: bool = True,
    epoch_budget: int | None = None,
) -> SFTResult:
    """Train on every row of ``train_csv`` (and the windows inside its histories).

    ``epoch_budget`` caps the epochs run by this call (a time-boxed job): the
    resume state is kept and a later call with the same arguments carries on.
    """
    started = time.perf_counter()
    catalog = load_catalog(data_dir)
    rows = load_interactions(train_csv, catalog)
    if not rows:
        raise ValueError(f"{train_csv}: no interaction rows to train on")
    sequences = build_sequences(rows, catalog.index, config.max_history)
    tokenizer = SidTokenizer.from_catalog(catalog)
    codes = tokenizer.item_codes(catalog)
    trie = ItemTrie.build(codes, len(tokenizer))
    paths = item_paths(trie, codes)

    # The scorers are fitted first: the served mix uses them, and so does the distillation teacher.
    transition = TransitionModel.fit(sequences, len(catalog))
    text = TextModel.fit([f"{item.title} {item.brand}" for item in catalog.items])
    num_windows = int(sum(sum(s.weights) for s in sequences))
    if config.short_context > 0:
        sequences = sequences + short_context_sequences(sequences, config.short_context, config.short_context_weight)
    labels = _teacher_labels(sequences, transition, text, config, progress)

    torch.manual_seed(config.seed)
    model = SidPolicy(policy_config(config, len(tokenizer), catalog.code_length))
    if config.text_init > 0:
        vectors = item_vectors(text, config.d_model, torch.Generator().manual_seed(config.seed))
        add_text_to_embeddings(model, codes, vectors, config.text_init)
    optimizer = make_optimizer(model, config)
    steps_per_epoch = -(-len(sequences) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    out.mkdir(parents=True, exist_ok=True)
    start_epoch, losses = _resume(out / STATE_FILE, model, optimizer, config)
    stop = config.epochs if epoch_budget is None else min(config.epochs, start_epoch + epoch_budget)

    for epoch in range(start_epoch, stop):
        torch.manual_seed(config.seed * 100_003 + epoch)  # dropout stream of this epoch
        order = torch.randperm(len(sequences), generator=torch.Generator().manual_seed(config.seed + epoch))
        model.train()
        total = 0.0
        bar = tqdm(
            range(steps_per_epoch), desc=f"sft epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False
        )
        for i in bar:
            picked = order[i * config.batch_size : (i + 1) * config.batch_size].tolist()
            chunk = [sequences[j] for j in picked]
            soft = None
            if labels is not None:
                rows = [labels.rows[j] for j in picked]
                soft = batch_soft_targets(chunk, rows, labels, codes, config.distill_weight, len(tokenizer))
            batch = make_batch(chunk, codes, paths, tokenizer.bos_id, tokenizer.pad_id, trie.dead, soft)
            lr = learning_rate(epoch * steps_per_epoch + i, total_steps, config)
            loss, _ = train_step(model, optimizer, batch, trie, config, lr)
            total += loss
            bar.set_postfix(loss=f"{loss:.3f}")
        losses.append(total / steps_per_epoch)
        log.info("epoch %d/%d loss %.4f", epoch + 1, config.epochs, losses[-1])
        _save_state(out / STATE_FILE, model, optimizer, config, epoch + 1, losses)

    if stop < config.epochs:
        return SFTResult(None, losses, time.perf_counter() - started, model.num_parameters(), num_windows)
    model.eval()
    manifest = {
        "kind": "sft",
        "sft_config": config.to_dict(),
        "data": {
            "catalog_fingerprint": fingerprint([data_dir / "items.json", data_dir / "sid_index.json"]),
            "train_file": train_csv.name,
            "train_fingerprint": fingerprint([train_csv]),
            "rows": len(rows),
            "windows": num_windows,
        },
        "metrics": {"train_loss": losses},
    }
    save_checkpoint(out, model, tokenizer, catalog, transition, text, manifest)
    (out / STATE_FILE).unlink(missing_ok=True)
    return SFTResult(out, losses, time.perf_counter() - started, model.num_parameters(), num_windows)


def _teacher_labels(
    sequences, transition: TransitionModel, text: TextModel, config: SFTConfig, progress: bool
) -> TeacherLabels | None:
    if config.distill_weight == 0:
        return None
    contexts = len({s.items[:j] for s in sequences for j in range(1, len(s.items)) if s.weights[j] > 0})
    with tqdm(total=contexts, desc="teacher labels", disable=not progress, leave=False) as bar:
        return label_sequences(
            sequences,
            lambda histories: teacher_scores(transition, text, histories, config.teacher_text_weight),
            config.teacher_top_k,
            config.teacher_sharpness,
            on_chunk=bar.update,
        )


def _save_state(path: Path, model, optimizer, config: SFTConfig, epoch: int, losses: list[float]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "losses": losses,
            "config": config.to_dict(),
        },
        tmp,
    )
    os.replace(tmp, path)


def _resume(path: Path, model, optimizer, config: SFTConfig) -> tuple[int, list[float]]:
    if not path.is_file():
        return 0, []
    state = torch.load(path, weights_only=True)
    if state["config"] != config.to_dict():
        raise ValueError(
            f"{path} was written by a run with another configuration; "
            "use a fresh --out directory or delete the file to start over"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log.info("resuming after epoch %d", state["epoch"])
    return state["epoch"], list(state["losses"])
