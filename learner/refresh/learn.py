"""What a refresh learns: continued SFT with replay, the RL step, updated scorers, and the child checkpoint.

Every piece starts from the served checkpoint and returns a new object; nothing here touches the
database. The order follows BENCHMARKS.md: SFT on the new users' windows (the measured winner),
then RL on the logged contexts, rewarded by the logged positives, with organic positives as the
anchors ReCast may repair all-zero groups with.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from learner.refresh.config import RefreshConfig
from learner.rl.config import RLConfig
from learner.rl.contexts import RLContext
from learner.rl.trainer import REPAIRS, EvalSet, RLTrainer
from learner.sft_trainer import row_teacher_labels, teacher_labels, train_batches
from recast.baselines import TransitionModel
from recast.catalog import Catalog
from recast.catalog_version import CatalogVersion
from recast.checkpoint import Checkpoint, save_checkpoint
from recast.dataset import Interaction
from recast.feedback import LoggedList, anchor_source, anchors, positives, target
from recast.sft import SFTConfig, item_paths, make_optimizer
from recast.signals.groups import Anchor
from recast.text import TextModel, item_text
from recast.trie import ItemTrie
from recast.windows import Sequence, build_sequences, short_context_sequences

log = logging.getLogger("recast.refresh")


def interactions(lists: list[LoggedList], item_ids: list[str]) -> list[Interaction]:
    """Next-item rows of logged lists: history -> the strongest positive; a list nobody engaged with still
    holds its history's own windows (every prefix predicts the item after it)."""
    rows = []
    for logged in lists:
        history = [item_ids[i] for i in logged.history]
        best = target(logged)
        if best is not None:
            rows.append(Interaction(logged.user_id, tuple(history), item_ids[best]))
        elif history:
            rows.append(Interaction(logged.user_id, tuple(history[:-1]), history[-1]))
    return rows


def sequences(rows: list[Interaction], catalog: Catalog, max_history: int) -> list[Sequence]:
    return [s for s in build_sequences(rows, catalog.index, max_history) if sum(s.weights) > 0]


def replay_sample(pool: list[Sequence], new: int, share: float, seed: int) -> list[Sequence]:
    """``share`` of the mixed set from the older ``pool``: ``new * share / (1 - share)`` sequences, seeded.

    >>> len(replay_sample([Sequence("u", (1,), (1.0,))] * 10, new=4, share=0.5, seed=0))
    4
    """
    want = min(len(pool), round(new * share / (1.0 - share))) if share > 0 else 0
    return random.Random(seed).sample(pool, want)


@dataclass
class SFTOutcome:
    model: torch.nn.Module
    steps: int
    losses: list[float]


def continue_sft(ckpt: Checkpoint, train: list[Sequence], config: RefreshConfig, seed: int, progress: bool = False,
                 scorers: tuple[TransitionModel, TextModel] | None = None) -> SFTOutcome:  # fmt: skip
    """More epochs of the initial SFT objective from the served weights, at a lower learning rate.

    The objective is the checkpoint's own: a policy trained with a teacher (``distill_weight`` > 0) is
    trained towards the same mixture here, the teacher being ``scorers`` (the child's transition and text
    scorers, which have counted the new windows). Without ``scorers`` it is plain next-item SFT. The
    teacher's made-up one-item pairs (``item_teacher_weight``) are not redrawn: they taught the parent
    what the catalog's text says, and a night's counts barely move them."""
    base = SFTConfig(**ckpt.manifest.get("sft_config", {})) if "sft_config" in ckpt.manifest else SFTConfig()
    model = copy.deepcopy(ckpt.model)
    rows = train
    if base.teacher_history:  # rows as long as the teacher reads (learner.refresh.run); the policy learns their cut
        train = short_context_sequences(rows, base.short_context, 1.0)
    if config.sft_epochs == 0 or not train:
        return SFTOutcome(model.eval(), 0, [])
    steps_per_epoch = math.ceil(len(train) / config.sft_batch_size)
    total = steps_per_epoch * config.sft_epochs
    sft = replace(base, lr=config.sft_lr, batch_size=config.sft_batch_size, epochs=config.sft_epochs,
                  warmup_steps=max(1, total // 10))  # fmt: skip
    trie = ItemTrie.build(ckpt.codes, len(ckpt.tokenizer))
    paths = item_paths(trie, ckpt.codes)
    if scorers is None:
        labels = None
    elif base.teacher_history:
        labels = row_teacher_labels(rows, train, *scorers, sft, ranker=ckpt.ranker)
    else:
        labels = teacher_labels(train, *scorers, sft, ranker=ckpt.ranker)
    optimizer = make_optimizer(model, sft)
    torch.manual_seed(seed)
    model.train()
    losses: list[float] = []
    with tqdm(total=total, desc="refresh sft", disable=not progress, leave=False) as bar:
        for epoch in range(config.sft_epochs):
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + epoch)).tolist()
            batches = [order[i * sft.batch_size : (i + 1) * sft.batch_size] for i in range(steps_per_epoch)]
            losses += train_batches(model, optimizer, batches, train, labels, ckpt.codes, paths, ckpt.tokenizer, trie,
                                    sft, len(losses), total, bar=bar)  # fmt: skip
    return SFTOutcome(model.eval(), len(losses), losses)


def rl_contexts(lists: list[LoggedList]) -> list[RLContext]:
    """One context per logged list with a positive: rewards from what the shopper did, organic items as anchors."""
    out = []
    for logged in lists:
        rewarded = positives(logged)
        if rewarded:
            out.append(RLContext(logged.history, rewarded,
                                 tuple(Anchor(i, anchor_source(logged, i)) for i in anchors(logged)), logged.segment,
                                 logged.request_id))  # fmt: skip
    return out


@dataclass
class RLOutcome:
    model: torch.nn.Module
    summary: dict  # the diagnostics' means (all-zero, repaired, unrepairable shares, mean reward, actor time)
    repairs: list[dict]  # every repair decision: step, request_id, status, anchor, replaced item, log-probs


def replay_contexts(pool: list[Sequence], max_history: int) -> list[RLContext]:
    """Older windows as contexts a replaying signal can draw: every counted window of each sequence.

    >>> [c.history for c in replay_contexts([Sequence("u", (1, 2, 3), (1.0, 1.0, 0.0))], 10)]
    [(1,)]
    """
    out = []
    for seq in pool:
        for j in range(1, len(seq.items)):
            if seq.weights[j] > 0:
                history = seq.items[max(0, j - max_history) : j]
                out.append(RLContext(tuple(history), {seq.items[j]: 1.0}, (), "replay"))
    return out


def rl_step(ckpt: Checkpoint, model: torch.nn.Module, catalog: Catalog, contexts: list[RLContext],
            config: RefreshConfig, out: Path, seed: int, progress: bool = False,
            replay: list[RLContext] | None = None) -> RLOutcome:  # fmt: skip
    """``config.rl_steps`` steps of the configured method from ``model``. ``repairs.jsonl`` lands in ``out``.
    ``replay``: older windows for a method that replays them (without any, it runs without replay)."""
    if config.method == "none" or config.rl_steps == 0 or not contexts:
        return RLOutcome(model, {"steps": 0, "contexts": len(contexts)}, [])
    start = replace(ckpt, model=model)
    rl = RLConfig(method=config.method, width=config.rl_width, contexts_per_step=min(config.rl_contexts, len(contexts)),
                  steps=config.rl_steps, lr=config.lr_rl, seed=seed,
                  max_history=ckpt.prompt_history())  # fmt: skip
    if rl.spec.replay and not replay:
        log.warning("refresh: %s replays older windows but there are none; running without replay", rl.method)
        rl = replace(rl, signal={**rl.signal, "replay": 0})
    trainer = RLTrainer(start, catalog, contexts, EvalSet([], []), rl, out, progress=False, replay=replay)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    with (out / REPAIRS).open("w") as repairs:
        for index in tqdm(range(rl.steps), desc=f"refresh rl {rl.method}", disable=not progress, leave=False):
            records.append(trainer.step(index, repairs))
    (out / "diagnostics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    mean = lambda key: sum(r[key] for r in records) / len(records)  # noqa: E731
    return RLOutcome(trainer.policy.eval(), {
        "steps": len(records), "contexts": len(contexts), "all_zero": mean("all_zero"), "repaired": mean("repaired"),
        "unrepairable": mean("unrepairable"), "mean_reward": mean("mean_reward"),
        "actor_s": sum(r["actor_s"] for r in records), "step_s": sum(r["step_s"] for r in records),
    }, trainer.repair_log)  # fmt: skip


def refresh_scorers(ckpt: Checkpoint, catalog: Catalog, new: list[Sequence],
                    mark_until: float = 1.0) -> tuple[TransitionModel, TextModel]:  # fmt: skip
    """The served model's transition counts plus the new sequences' (exactly as if fitted on both), an added item
    marked so until counted ``mark_until`` times (``RefreshConfig.added_mark_until``); the text model refitted on
    the catalog's text (it reads no interactions, so only a changed catalog changes it)."""
    transition = ckpt.transition.update(new, mark_until)
    text = TextModel.fit([item_text(item) for item in catalog.items])
    return transition, text


def save_child(out: Path, ckpt: Checkpoint, model: torch.nn.Module, catalog: Catalog, transition: TransitionModel,
               text: TextModel, refresh: dict, catalog_version: CatalogVersion | None = None) -> Path:  # fmt: skip
    """The child checkpoint: the parent's format and SFT config, its lineage and data window in the manifest, and
    the catalog version it was trained under (default: the catalog's base). The parent's learned ranker is kept
    as it is: it reads the refreshed scorers' scores, each scaled per row, so a night's counts do not make it
    stale, and refitting it needs the out-of-fold counts of every training row, which a refresh does not hold."""
    keep = {k: v for k, v in ckpt.manifest.items() if k in ("sft_config", "data", "ranker_config")}
    manifest = {**keep, "kind": "refresh", "parent": {"version": ckpt.version, "path": str(ckpt.path)},
                "refresh": refresh, "metrics": {}}  # fmt: skip
    return save_checkpoint(out, model, ckpt.tokenizer, catalog, transition, text, manifest,
                           catalog_version=catalog_version, ranker=ckpt.ranker)  # fmt: skip
