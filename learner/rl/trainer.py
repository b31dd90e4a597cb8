"""The RL loop: rollout -> reward -> (repair) -> signal -> actor update with reference KL.

One loop for every method; ``RLConfig.method`` only swaps the signal strategy
(``recast.signals.strategy``). Each step:

1. *Rollout*: trie-constrained beam search of width W from the current policy for
   ``contexts_per_step`` contexts; beam scores are the sequence log-probabilities.
2. *Reward*: the configured reward (``recast.signals.reward``) of each candidate
   against the context's positive set (hits are the disambiguated item).
3. *Repair* (if on): groups where no member is a positive get their anchor, scored
   by teacher forcing.
4. *Signal*: the SignalSpec (``RLConfig.method`` + ``signal``) picks actor rows and
   terms per group (``recast.signals.strategy``), plus replayed older windows. Only
   those rows are ever run through the actor: nothing is computed and then discarded.
5. *Update* (``learner.rl.update``): token log-probabilities of the rows under the
   policy (with grad) and the frozen reference (no grad), PPO-clip + k3 KL + pair
   terms, part by part (so the anchors' gradient share is measured and capped), one
   AdamW step. Dropout is off throughout, so the rollout scores are the policy's
   exact log-probabilities and the PPO ratio is 1 in the first epoch.
6. *Probe* (``learner.rl.probe``, timed apart): the top-1 change and the anchors that
   entered the top-W under the updated policy.

Diagnostics go to ``diagnostics.jsonl`` (one line per step), repair decisions to
``repairs.jsonl`` (the audit trail), and the final policy to an HF-format checkpoint.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from learner.rl.config import RLConfig
from learner.rl.contexts import RLContext, offline_contexts
from learner.rl.evalset import EvalSet, row_entries, window_entries
from learner.rl.probe import probe_after_update
from learner.rl.update import actor_update
from recast.beam import BeamSearchConfig, beam_search, score_codes
from recast.catalog import Catalog
from recast.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from recast.dataset import load_catalog, load_interactions
from recast.metrics import rank_of, summarize
from recast.recommender import Recommender
from recast.sft import item_paths
from recast.signals.groups import build_groups, group_stats
from recast.signals.repair import REPAIRED, UNREPAIRABLE, needs_anchor_score, repair
from recast.signals.reward import get_reward
from recast.signals.strategy import ANCHOR, REPLAY, ActorPlan, add_replay, build_plan
from recast.teacher_forcing import token_logprobs

log = logging.getLogger(__name__)
DIAGNOSTICS = "diagnostics.jsonl"
REPAIRS = "repairs.jsonl"
EVAL_RANKS = "eval_ranks.json"

__all__ = ["EvalSet", "RLResult", "RLTrainer", "train_rl"]


@dataclass
class RLResult:
    checkpoint: Path
    history: list[dict]  # the diagnostics records
    final_eval: dict
    start_eval: dict


class RLTrainer:
    def __init__(
        self,
        sft: Checkpoint,
        catalog: Catalog,
        contexts: list[RLContext],
        eval_set: EvalSet,
        config: RLConfig,
        out: Path,
        progress: bool = True,
        replay: list[RLContext] | None = None,
    ):
        if not contexts:
            raise ValueError("no RL contexts to train on")
        self.sft, self.catalog, self.contexts, self.config, self.out = sft, catalog, contexts, config, out
        self.eval_set = eval_set.head(config.eval_rows)
        self.progress = progress
        self.spec = config.spec
        self.reward = get_reward(self.spec.reward)
        # Older windows to replay as supervised rows (the SFT users'); none asked for, none needed.
        self.replay = list(replay or []) if self.spec.replay else []
        if self.spec.replay and not self.replay:
            raise ValueError("the signal replays older windows (replay > 0) but none were given")
        self.replay_gen = torch.Generator().manual_seed(config.seed + 7919)
        torch.manual_seed(config.seed)
        self.policy = copy.deepcopy(sft.model).eval()
        self.reference = copy.deepcopy(sft.model).eval().requires_grad_(False)
        self.tokenizer, self.codes = sft.tokenizer, sft.codes
        # Prompts and the eval decode are the served definitions (history cut, encoding, trie),
        # on the policy being trained: the Recommender holds the same module, updated in place.
        self.recommender = Recommender(
            self.policy, self.tokenizer, self.codes, sft.transition,
            beam=BeamSearchConfig(config.eval_beams), max_history=config.max_history,
        )  # fmt: skip
        self.trie = self.recommender.trie
        self.paths = item_paths(self.trie, self.codes)
        self.code_rows = [tuple(c) for c in self.codes.tolist()]  # for rewards that read SID codes
        self.optimizer = torch.optim.AdamW(
            self.policy.parameters(), lr=config.lr, betas=(0.9, 0.98), weight_decay=config.weight_decay
        )
        self.order = torch.randperm(len(contexts), generator=torch.Generator().manual_seed(config.seed)).tolist()
        self.cursor = 0
        self.budget = 0  # rollout budget: contexts x W, summed over steps
        self.anchors_injected = 0  # counted apart from rolled-out hits
        # Every repair decision (repaired or unrepairable) with its step and the context's reward group:
        # the refresh writes the repaired ones to the ledger and counts the rest per segment.
        self.repair_log: list[dict] = []
        self.last_ranks: list[int | None] = []

    # -- pieces of a step -------------------------------------------------------------
    def next_contexts(self) -> list[RLContext]:
        batch = []
        while len(batch) < self.config.contexts_per_step:
            if self.cursor == len(self.order):  # a new pass over the pool, reshuffled
                gen = torch.Generator().manual_seed(self.config.seed + len(self.contexts) + self.budget)
                self.order, self.cursor = torch.randperm(len(self.contexts), generator=gen).tolist(), 0
            batch.append(self.contexts[self.order[self.cursor]])
            self.cursor += 1
        return batch

    def rollout(self, contexts: list[RLContext], first_id: int):
        prompts = self.recommender.prompts([list(c.history) for c in contexts])
        beams = beam_search(self.policy, self.trie, prompts, BeamSearchConfig(self.config.width), self.tokenizer.pad_id)
        groups = build_groups(
            beams.items.tolist(),
            beams.scores.tolist(),
            [c.positives for c in contexts],
            [c.anchors for c in contexts],
            [c.segment for c in contexts],
            first_id=first_id,
            reward=self.reward,
            codes=self.code_rows,
        )
        return prompts, groups

    def repair_groups(self, prompts, groups):
        """Teacher-force the anchors of the groups that need one, then repair every group."""
        wanted = [(gi, needs_anchor_score(g)) for gi, g in enumerate(groups)]
        wanted = [(gi, a) for gi, a in wanted if a is not None]
        scores: dict[int, float] = {}
        if wanted:
            codes = self.codes[[a.item for _, a in wanted]][:, None, :]  # (G, 1, L)
            got = score_codes(self.policy, self.trie, [prompts[gi] for gi, _ in wanted], codes, self.tokenizer.pad_id)
            scores = {gi: float(s) for (gi, _), s in zip(wanted, got[:, 0].tolist())}
        repaired, records = [], []
        for gi, group in enumerate(groups):
            fixed, record = repair(group, scores.get(gi))
            repaired.append(fixed)
            records.append(record)
        return repaired, records

    def plan(self, prompts, groups) -> tuple[list[list[int]], ActorPlan]:
        """The signal's rows for the groups, then the replayed windows (their prompts appended)."""
        plan = build_plan(groups, self.spec)
        if not self.replay:
            return prompts, plan
        picks = torch.randint(len(self.replay), (self.spec.replay,), generator=self.replay_gen).tolist()
        windows = [self.replay[i] for i in picks]
        targets = [next(iter(w.positives)) for w in windows]
        add_replay(plan, len(prompts), targets, self.spec.replay_weight)
        return prompts + self.recommender.prompts([list(w.history) for w in windows]), plan

    def score(self, model, prompts: list[list[int]], items: list[int]) -> torch.Tensor:
        """(M, L) teacher-forced token log-probabilities (differentiable unless under no_grad)."""
        return token_logprobs(model, self.trie, self.paths, prompts, items, self.codes, self.tokenizer.pad_id)

    def actor_update(self, prompts, groups, plan: ActorPlan) -> dict:
        """Forward, backward and step over the plan's rows only (``learner.rl.update``)."""
        c = self.config
        L = self.codes.shape[1]
        # groups_tokens: the same divisor for every method; token_mean: the literal mean over the batch
        normaliser = len(groups) * L if c.normaliser == "groups_tokens" else max(len(plan.rows), 1) * L
        dropout = (ANCHOR, REPLAY) if self.spec.supervised_dropout else ()
        return actor_update(self.policy, self.reference, self.optimizer, plan, prompts, self.score, normaliser,
                            c.objective, c.ppo_epochs, c.grad_clip, self.spec.anchor_cap, dropout)  # fmt: skip

    @torch.no_grad()
    def evaluate(self, batch_size: int = 128) -> dict:
        """Policy-alone metrics on the eval split; the per-row ranks stay in ``self.last_ranks``."""
        ranks: list[int | None] = []
        for start in range(0, len(self.eval_set.histories), batch_size):
            result = self.recommender.policy(self.eval_set.histories[start : start + batch_size])
            for row, target in enumerate(self.eval_set.targets[start : start + batch_size]):
                ranks.append(rank_of(target, [i for i, _ in result.top(row)]))
        self.last_ranks = ranks
        return {**self.metrics(ranks), "target_logprob": self.target_logprob(batch_size)}

    @torch.no_grad()
    def target_logprob(self, batch_size: int = 256) -> float | None:
        """Mean teacher-forced log-probability of the eval targets: a low-variance companion to the hit
        rates (a few windows decide those), cheap since it needs no beam search."""
        total, n = 0.0, len(self.eval_set.targets)
        for start in range(0, n, batch_size):
            prompts = self.recommender.prompts(self.eval_set.histories[start : start + batch_size])
            codes = self.codes[self.eval_set.targets[start : start + batch_size]][:, None, :]  # (B, 1, L)
            total += score_codes(self.policy, self.trie, prompts, codes, self.tokenizer.pad_id).sum().item()
        return total / n if n else None

    @staticmethod
    def metrics(ranks: list[int | None]) -> dict:
        metrics = summarize(ranks)
        return {k: metrics[k] for k in ("Pass@1", "HR@3", "HR@10", "NDCG@10", "rows")}

    # -- the loop -----------------------------------------------------------------------
    def step(self, index: int, repairs_file) -> dict:
        c = self.config
        started = time.perf_counter()
        contexts = self.next_contexts()
        t0 = time.perf_counter()
        prompts, groups = self.rollout(contexts, first_id=index * c.contexts_per_step)
        rollout_s = time.perf_counter() - t0
        stats = group_stats(groups)
        self.budget += len(contexts) * c.width
        t0 = time.perf_counter()
        repaired_n = unrepairable_n = 0
        if self.spec.repair:
            groups, records = self.repair_groups(prompts, groups)
            for context, record in zip(contexts, records):
                if record.status != "not_needed":
                    entry = {"step": index, "request_id": context.request_id, **record.to_dict()}
                    self.repair_log.append(entry)
                    repairs_file.write(json.dumps(entry) + "\n")
            repaired_n = sum(r.status == REPAIRED for r in records)
            unrepairable_n = sum(r.status == UNREPAIRABLE for r in records)
            self.anchors_injected += repaired_n
        else:
            unrepairable_n = sum(g.all_zero for g in groups)  # nothing repairs them
        anchor_s = time.perf_counter() - t0
        row_prompts, plan = self.plan(prompts, groups)
        update = self.actor_update(row_prompts, groups, plan)
        step_s = time.perf_counter() - started
        probe = self.probe(index, prompts, groups)
        n = len(groups)
        return {
            "step": index + 1,
            "budget": self.budget,
            "anchors_injected": self.anchors_injected,
            "all_zero": stats.all_zero,
            "flat": stats.flat,
            "single_hit": stats.single_hit,
            "multi_hit": stats.multi_hit,
            "repaired": repaired_n / n,
            "unrepairable": unrepairable_n / n,
            "mean_reward": stats.mean_reward,
            "actor_rows": len(plan.rows),
            "groups_used": plan.groups_used,
            "skipped": dict(plan.skipped),
            **update,
            "rollout_s": rollout_s,
            "anchor_s": anchor_s,
            "step_s": step_s,
            **probe,
        }

    def probe(self, index: int, prompts, groups) -> dict:
        """The after-update probe every ``probe_every`` steps, timed apart from the step."""
        every = self.config.probe_every
        if not every or (index + 1) % every:
            return {}
        t0 = time.perf_counter()
        figures = probe_after_update(self.policy, self.trie, prompts, groups, self.codes, self.tokenizer.pad_id)
        return {**figures, "probe_s": time.perf_counter() - t0}

    def run(self, start_ranks: list[int | None] | None = None) -> RLResult:
        """The whole run. ``start_ranks``: the SFT start's eval ranks when already known (every run of an
        experiment starts from the same SFT on the same eval split, so it is scored once)."""
        c = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        history: list[dict] = []
        if start_ranks is None or len(start_ranks) != len(self.eval_set.targets):
            start_eval = self.evaluate()
            start_ranks = self.last_ranks
        else:
            start_eval = {**self.metrics(start_ranks), "target_logprob": self.target_logprob()}
        history.append({"step": 0, "budget": 0, "eval": start_eval})
        last_eval = start_eval
        with (self.out / DIAGNOSTICS).open("w") as diag, (self.out / REPAIRS).open("w") as repairs:
            diag.write(json.dumps(history[0]) + "\n")
            bar = tqdm(range(c.steps), desc=f"rl {c.method} W={c.width}", disable=not self.progress)
            for index in bar:
                record = self.step(index, repairs)
                if (index + 1) % c.eval_every == 0 or index + 1 == c.steps:
                    last_eval = record["eval"] = self.evaluate()
                diag.write(json.dumps(record) + "\n")
                diag.flush()
                history.append(record)
                bar.set_postfix(zero=f"{record['all_zero']:.2f}", pass1=f"{last_eval['Pass@1']:.4f}")
        # Per-row target ranks at the start and the end, for paired comparisons between runs.
        ranks = {"start": start_ranks, "final": self.last_ranks, "users": self.eval_set.users}
        (self.out / EVAL_RANKS).write_text(json.dumps(ranks) + "\n")
        checkpoint = self.save(start_eval, last_eval)
        return RLResult(checkpoint, history, last_eval, start_eval)

    def save(self, start_eval: dict, final_eval: dict) -> Path:
        manifest = {
            **{k: v for k, v in self.sft.manifest.items() if k in ("sft_config", "data")},
            "kind": "rl",
            "rl_config": self.config.to_dict(),
            "parent": self.sft.version,
            "rl_data": {
                "contexts": len(self.contexts),
                "replay_windows": len(self.replay),
                "budget": self.budget,
                "anchors_injected": self.anchors_injected,
            },
            "metrics": {"rl_eval_start": start_eval, "rl_eval_final": final_eval},
        }
        save_checkpoint(
            self.out / "checkpoint",
            self.policy,
            self.tokenizer,
            self.catalog,
            self.sft.transition,
            self.sft.text,
            manifest,
            ranker=self.sft.ranker,
        )
        return self.out / "checkpoint"


def train_rl(
    data_dir: Path,
    sft_dir: Path,
    train_csv: Path,
    eval_csv: Path,
    config: RLConfig,
    out: Path,
    progress: bool = True,
    replay_csv: Path | None = None,
    start_ranks: list[int | None] | None = None,
) -> RLResult:
    """RL from the SFT checkpoint ``sft_dir`` on the windows of ``train_csv`` (users the
    SFT never saw, see BENCHMARKS.md), evaluated on ``eval_csv``, written to ``out``.
    ``replay_csv``: older windows (the SFT users') for a signal that replays them."""
    catalog = load_catalog(data_dir)
    sft = load_checkpoint(sft_dir)
    if sft.item_ids != [item.item_id for item in catalog.items]:
        raise CheckpointError(f"{sft_dir} was trained on another catalog than {data_dir}")
    cut = sft.prompt_history()
    if config.max_history > cut:  # prompts as served: no longer than the policy was trained on
        log.info("prompts keep %d history item(s), as %s was trained", cut, sft_dir)
        config = replace(config, max_history=cut)
    rows = load_interactions(train_csv, catalog)
    contexts = offline_contexts(rows, catalog.index, config.max_history)
    eval_rows = load_interactions(eval_csv, catalog)
    if config.eval_unit == "windows":
        eval_set = window_entries(eval_rows, catalog.index, config.max_history)
    else:
        eval_set = row_entries(eval_rows, catalog.index)
    replay = None
    if replay_csv is not None and config.spec.replay:
        replay = offline_contexts(load_interactions(replay_csv, catalog), catalog.index, config.max_history)
    log.info(
        "RL %s W=%d: %d contexts from %s, %d eval entries",
        config.method,
        config.width,
        len(contexts),
        train_csv.name,
        len(eval_set.targets),
    )
    return RLTrainer(sft, catalog, contexts, eval_set, config, out, progress, replay=replay).run(start_ranks)
