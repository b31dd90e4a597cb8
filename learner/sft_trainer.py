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
from recast.model import PolicyConfig, SidPolicy
from recast.sft import SFTConfig, item_paths, learning_rate, make_batch, make_optimizer, train_step
from recast.text import TextModel
from recast.tokenizer import SidTokenizer
from recast.trie import ItemTrie
from recast.windows import build_sequences

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

    torch.manual_seed(config.seed)
    model = SidPolicy(policy_config(config, len(tokenizer), catalog.code_length))
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
            chunk = [sequences[j] for j in order[i * config.batch_size : (i + 1) * config.batch_size].tolist()]
            batch = make_batch(chunk, codes, paths, tokenizer.bos_id, tokenizer.pad_id, trie.dead)
            lr = learning_rate(epoch * steps_per_epoch + i, total_steps, config)
            loss, _ = train_step(model, optimizer, batch, trie, config, lr)
            total += loss
            bar.set_postfix(loss=f"{loss:.3f}")
        losses.append(total / steps_per_epoch)
        log.info("epoch %d/%d loss %.4f", epoch + 1, config.epochs, losses[-1])
        _save_state(out / STATE_FILE, model, optimizer, config, epoch + 1, losses)

    num_windows = int(sum(sum(s.weights) for s in sequences))
    if stop < config.epochs:
        return SFTResult(None, losses, time.perf_counter() - started, model.num_parameters(), num_windows)
    model.eval()
    transition = TransitionModel.fit(sequences, len(catalog))
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
    text = TextModel.fit([f"{item.title} {item.brand}" for item in catalog.items])
    # The resume state stays until the checkpoint is complete (a crash while saving resumes), then goes.
    save_checkpoint(out, model, tokenizer, catalog, transition, text, manifest, transient=(STATE_FILE,))
    (out / STATE_FILE).unlink(missing_ok=True)
    return SFTResult(out, losses, time.perf_counter() - started, model.num_parameters(), num_windows)


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
