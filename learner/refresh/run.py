"""One refresh attempt, end to end: lock, run record, read, learn, gate, publish or reject.

**One at a time.** The attempt first takes a Postgres advisory lock on a connection of its own.
The lock lives exactly as long as that connection: a worker SIGKILLed mid-refresh drops the
connection and Postgres frees the lock, so nothing has to expire. An attempt that finds the lock
taken is recorded as ``refused`` and ends.

**Every attempt is a row** of ``training_runs``, written in short transactions of their own so an
operator (or a test) sees the phase in progress. The holder of the lock first marks any other
``running`` refresh as ``failed``: only a lock holder ever writes a running row, so such a row
belongs to a worker that died. Publishing (register, activate, the run's final row) and rejecting
(register, reject, the run's final row) are each one transaction, which also writes the run's repair
ledger and audit snapshot (``learner/audit``): the registry, the audit and the run record never
disagree. A crash anywhere before that leaves the served model untouched.

**Safe to retry.** Nothing is consumed until a refresh publishes: a retried or repeated attempt
reads the same window again (or finds nothing new and is skipped).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, insert, text, update
from sqlalchemy.pool import NullPool

from learner import registry
from learner.audit import record as audit_record
from learner.refresh import data, gate, learn
from learner.refresh.config import RefreshConfig
from recast.added_items import grow_checkpoint
from recast.checkpoint import CheckpointError, load_checkpoint, manifest_version
from recast.dataset import load_catalog, load_categories, load_interactions
from recast.feedback import LoggedList, target
from recast.recommender import Recommender
from schemas.settings import Settings
from schemas.tables import TrainingRun

log = logging.getLogger("recast.refresh")
RUNS = TrainingRun.__table__
LOCK_KEY = 0x7265_6361_7374_0001  # "recast" + 1: the refresh's advisory lock
REPLAY_POOL = 100_000  # older groups read for replay and the transition counts, newest first


@dataclass(frozen=True)
class RefreshOutcome:
    run_id: int
    status: str  # succeeded | skipped | refused | failed
    decision: str | None = None  # published | rejected
    reason: str | None = None
    version: str | None = None  # the candidate
    parent: str | None = None


class _Skip(Exception):
    """Nothing to learn from yet: the run ends as skipped with this reason."""


def refresh(settings: Settings, trigger: str = "manual", task_id: str | None = None, progress: bool = False,
            now: datetime | None = None, **overrides) -> RefreshOutcome:  # fmt: skip
    """Run one refresh attempt (see the module docstring); ``overrides`` replace :class:`RefreshConfig` fields."""
    config = RefreshConfig.from_settings(settings, **overrides)
    lock_engine = create_engine(settings.database_url, poolclass=NullPool)
    engine = create_engine(settings.database_url, pool_pre_ping=True)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    base = {"kind": "refresh", "trigger": trigger, "task_id": task_id, "worker": worker, "config": config.to_dict()}
    try:
        with lock_engine.connect() as lock:
            if not lock.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar():
                lock.commit()
                holder = _running(engine)
                reason = "another refresh holds the lock" + (f" (run {holder})" if holder else "")
                run_id = _insert(engine, {**base, "status": "refused", "reason": reason, "finished_at": _now()})
                log.warning("refresh %d refused: %s", run_id, reason)
                return RefreshOutcome(run_id, "refused", reason=reason)
            lock.commit()
            try:
                return _locked(engine, settings, config, base, progress, now or datetime.now(UTC))
            finally:
                lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                lock.commit()
    finally:
        engine.dispose()
        lock_engine.dispose()


def _locked(engine: Engine, settings: Settings, config: RefreshConfig, base: dict, progress: bool,
            now: datetime) -> RefreshOutcome:  # fmt: skip
    with engine.begin() as conn:
        orphans = conn.execute(
            update(RUNS).where(RUNS.c.kind == "refresh", RUNS.c.status == "running")
            .values(status="failed", finished_at=_now(),
                    error="its worker stopped before finishing (the refresh lock was free again)")
            .returning(RUNS.c.id)
        ).scalars().all()  # fmt: skip
    if orphans:
        log.warning("marked refreshes %s failed: their worker died mid-run", orphans)
    run_id = _insert(engine, {**base, "status": "running", "phase": "reading"})
    run = _Run(engine, run_id)
    try:
        outcome = _learn_and_gate(run, settings, config, progress, now)
    except _Skip as skip:
        run.finish(status="skipped", reason=str(skip))
        log.info("refresh %d skipped: %s", run_id, skip)
        return RefreshOutcome(run_id, "skipped", reason=str(skip))
    except Exception as exc:
        run.finish(status="failed", error=f"{type(exc).__name__}: {exc}")
        log.exception("refresh %d failed", run_id)
        raise
    return outcome


class _Run:
    """The run's row, updated phase by phase (each update its own short transaction)."""

    def __init__(self, engine: Engine, run_id: int):
        self.engine, self.id = engine, run_id
        self.timings: dict[str, float] = {}
        self.counts: dict[str, float] = {}
        self._phase, self._t0 = "reading", time.monotonic()

    def phase(self, name: str) -> None:
        self.timings[self._phase] = round(time.monotonic() - self._t0, 3)
        self._phase, self._t0 = name, time.monotonic()
        self.update(phase=name, timings=self.timings, counts=self.counts)

    def update(self, **values) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(RUNS).where(RUNS.c.id == self.id).values(**values))

    def final_values(self, **values) -> dict:
        self.timings[self._phase] = round(time.monotonic() - self._t0, 3)
        return {"timings": self.timings, "counts": self.counts, "finished_at": _now(), **values}

    def finish(self, **values) -> None:
        self.update(**self.final_values(**values))


def _learn_and_gate(run: _Run, settings: Settings, config: RefreshConfig, progress: bool,
                    now: datetime) -> RefreshOutcome:  # fmt: skip
    catalog = load_catalog(settings.data_dir)
    with run.engine.connect() as conn:
        current = registry.active(conn)
        if current is None:
            raise _Skip("no active model in the registry to start from")
        window = data.window(conn, config.period_s, now)
        run.update(base_version=current.version, window_start=window.start, window_end=window.end)
        if window.start is not None and window.end <= window.start:
            raise _Skip(f"no complete period since the last published refresh (window ends {window.end.isoformat()})")
        still_open = data.still_open(conn, window)
        if still_open:
            raise _Skip(f"{still_open} groups of the window are still open (attribution windows running, or the "
                        "ingest worker is behind)")  # fmt: skip
        groups = data.read_groups(conn, window)
        older = data.read_replay(conn, groups[0].opened_at if groups else window.end, REPLAY_POOL)
        trained_under = data.catalog_version(conn)  # retirements so far: the child is never served under fewer
        catalog = data.grown_catalog(conn, catalog, trained_under)  # and the items added online so far
    run.counts.update(groups=len(groups))
    if len(groups) < config.min_groups:
        raise _Skip(f"{len(groups)} new closed groups, fewer than the {config.min_groups} a refresh needs")
    registry.verify_registered(current)
    parent = load_checkpoint(current.path)
    try:  # over the items added since it was trained, so their interactions are learnt (recast.added_items)
        parent = grow_checkpoint(parent, catalog)
    except ValueError as exc:
        raise CheckpointError(f"the served model {current.version} was trained on another catalog: {exc}") from None
    max_history = parent.prompt_history()
    to_list = lambda g: data.to_logged(g, catalog, settings.reward_weights, max_history)  # noqa: E731
    train_groups, slice_groups, heldout_from = data.split_slice(groups, config.heldout_share)
    train_lists, slice_lists = [to_list(g) for g in train_groups], [to_list(g) for g in slice_groups]
    run.update(heldout_from=heldout_from, groups_used=len(train_groups), reward_mean=_reward_mean(train_lists))
    run.counts.update(train_groups=len(train_groups), slice_groups=len(slice_groups),
                      all_zero=_share(train_lists, lambda x: not any(r > 0 for r in x.rewards)),
                      with_organic=_share(train_lists, lambda x: bool(x.organic)))  # fmt: skip
    seed = config.seed + run.id
    work = settings.run_dir / "refresh" / f"run-{run.id}"
    work.mkdir(parents=True, exist_ok=True)

    run.phase("scorers")
    new_rows = learn.interactions(train_lists, parent.item_ids)
    new = learn.sequences(new_rows, catalog, max_history)
    # SFT reads rows as long as the policy's teacher did, where that is longer than the prompt (continue_sft
    # cuts them to the prompt and labels each window from its row); the scorers count the prompt's windows.
    sft_history = max(max_history, parent.teacher_history())
    sft_new = new if sft_history == max_history else learn.sequences(new_rows, catalog, sft_history)
    pool = learn.sequences(learn.interactions([to_list(g) for g in older], parent.item_ids), catalog, sft_history)
    base_rows = load_interactions(config.train_file, catalog) if config.train_file else []
    pool += learn.sequences(base_rows, catalog, sft_history)
    replay = learn.replay_sample(pool, len(sft_new), config.replay_share, seed)
    # The scorers first: they count the new windows, and a distilled policy's teacher is made of them.
    transition, text_model = learn.refresh_scorers(parent, catalog, new, config.added_mark_until)
    run.phase("sft")
    sft = learn.continue_sft(parent, sft_new + replay, config, seed, progress, scorers=(transition, text_model))
    run.counts.update(sft_new=len(sft_new), sft_replay=len(replay), sft_steps=sft.steps)

    run.phase("rl")
    contexts = learn.rl_contexts(train_lists)
    rl = learn.rl_step(parent, sft.model, catalog, contexts, config, work / "rl", seed, progress,
                       replay=learn.replay_contexts(replay, max_history))  # fmt: skip
    run.counts.update({f"rl_{k}": v for k, v in rl.summary.items()})

    run.phase("saving")
    child = _save(settings, parent, rl.model, catalog, transition, text_model, trained_under, {
        "run_id": run.id, "method": config.method,
        "window": {"start": _iso(window.start), "end": _iso(window.end), "first_group": _iso(groups[0].opened_at),
                   "heldout_from": _iso(heldout_from)},
        "counts": run.counts, "config": config.to_dict(),
    })  # fmt: skip

    run.phase("gate")
    result, served, candidate = _gate(settings, config, current.version, parent, child, catalog, slice_lists, seed)
    run.counts.update({f"gate_rows_{k}": v["rows"] for k, v in result.slices.items()})
    run.phase("audit")
    audit = audit_record.build(
        train_groups, train_lists, rl.repairs, slice_groups, slice_lists, result.ranks.get("window"), parent.item_ids,
        load_categories(settings.data_dir), audit_record.rules(settings),
        audit_record.config(settings, config.gate_min_rows, config.gate_resamples, seed), served, candidate,
    )  # fmt: skip
    run.counts.update(repairs=len(audit.ledger), flagged_segments=len(audit.flagged))
    run.phase("publishing")
    return _publish(run, child, current.version, result, audit,
                    {"gate": result.slices, "sft_loss": sft.losses[-5:], "rl": rl.summary})  # fmt: skip


def _publish(run: _Run, child: Path, current_version: str, result: gate.GateResult, audit: audit_record.AuditRecord,
             metrics: dict) -> RefreshOutcome:  # fmt: skip
    """One transaction: register the child, publish or reject it, the audit's ledger and snapshot, the run's row."""
    with run.engine.begin() as conn:
        candidate = registry.register(conn, child, metrics=metrics)
        if result.publish:
            registry.activate(conn, candidate.version, actor=f"refresh run {run.id}", reason=result.reason,
                              action="publish")  # fmt: skip
        else:
            registry.reject(conn, candidate.version, result.reason)
        decision = "published" if result.publish else "rejected"
        audit_record.write(conn, run.id, audit, candidate.version, current_version, decision)
        conn.execute(update(RUNS).where(RUNS.c.id == run.id).values(**run.final_values(
            status="succeeded", phase="done", decision=decision, reason=result.reason,
            result_version=candidate.version, metrics=metrics)))  # fmt: skip
    log.info("refresh %d %s %s (parent %s): %s", run.id, decision, candidate.version, current_version, result.reason)
    return RefreshOutcome(run.id, "succeeded", decision, result.reason, candidate.version, current_version)


def _gate(settings: Settings, config: RefreshConfig, current_version: str, parent, child: Path, catalog,
          slice_lists: list[LoggedList], seed: int) -> tuple[gate.GateResult, Recommender, Recommender | None]:
    """The gate's result, and the served and candidate recommenders (None: the candidate failed its checks)."""
    served = Recommender.from_checkpoint(parent, config.beam_width)
    try:
        candidate = gate.check_checkpoint(child)
    except CheckpointError as exc:
        return gate.GateResult(False, f"checkpoint checks failed: {exc}"), served, None
    child_ckpt = load_checkpoint(child)
    candidate = Recommender.from_checkpoint(child_ckpt, config.beam_width)
    slices = [_window_slice(slice_lists)]
    if config.gate_split is not None:
        rows = load_interactions(config.gate_split, catalog)[: config.gate_max_rows]
        slices.append(gate.Slice("offline", [[catalog.index[i] for i in r.history] for r in rows],
                                 [catalog.index[r.target] for r in rows]))  # fmt: skip
    figures, ranks = {}, {}
    for rows in slices:
        current_ranks = _cached_ranks(settings, current_version, rows, config.beam_width,
                                      lambda r=rows: gate.ranks(served, r))  # fmt: skip
        # Cached too: if it is published, tomorrow's gate scores it as the served model on the same offline rows.
        candidate_ranks = _cached_ranks(settings, child_ckpt.version, rows, config.beam_width,
                                        lambda r=rows: gate.ranks(candidate, r))  # fmt: skip
        figures[rows.name] = {"rows": len(rows.targets),
                              **gate.compare(current_ranks, candidate_ranks, config.gate_resamples, seed)}
        ranks[rows.name] = {"current": current_ranks, "candidate": candidate_ranks}
    publish, reason = gate.decide(figures, config.gate_tolerance, config.gate_min_rows)
    return gate.GateResult(publish, reason, figures, ranks), served, candidate


def _window_slice(lists: list[LoggedList]) -> gate.Slice:
    rows = [(list(x.history), t) for x in lists if (t := target(x)) is not None]
    return gate.Slice("window", [h for h, _ in rows], [t for _, t in rows])


def _cached_ranks(settings: Settings, version: str, rows: gate.Slice, beams: int, compute) -> dict:
    """The served model's ranks on a slice: the same model, rows and width give the same ranks every night."""
    # v2: the entries hold the served lists too (the audit's exposure figures).
    path = settings.run_dir / "gate-cache" / f"{version}-{rows.name}-{rows.fingerprint()}-w{beams}-v2.json"
    if path.is_file():
        return json.loads(path.read_text())
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)
    return result


def _save(settings: Settings, parent, model, catalog, transition, text_model, catalog_version,
          refresh: dict) -> Path:  # fmt: skip
    """Write the child into a fresh folder, then move it to ``models/<version>`` (the checkpoint's version: the hash
    of its whole manifest, so the folder is named as the registry names the model)."""
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".child-", dir=settings.models_dir))
    learn.save_child(tmp, parent, model, catalog, transition, text_model, refresh, catalog_version)
    version = manifest_version(json.loads((tmp / "manifest.json").read_text()))
    final = settings.models_dir / version
    if final.exists():  # the same weights again (a retried run): keep the registered copy
        shutil.rmtree(tmp)
    else:
        tmp.rename(final)
    return final.resolve()


def _insert(engine: Engine, values: dict) -> int:
    with engine.begin() as conn:
        return conn.execute(insert(RUNS).values(**values).returning(RUNS.c.id)).scalar_one()


def _running(engine: Engine) -> int | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT max(id) FROM training_runs WHERE kind = 'refresh' AND status = 'running'")
                            ).scalar()  # fmt: skip


def _reward_mean(lists: list[LoggedList]) -> float | None:
    rewards = [r for x in lists for r in x.rewards]
    return sum(rewards) / len(rewards) if rewards else None


def _share(lists: list[LoggedList], predicate) -> float:
    return round(sum(1 for x in lists if predicate(x)) / len(lists), 4) if lists else 0.0


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None
