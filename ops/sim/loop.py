"""The closed loop, day by day, on the embedded stack: serve, shop, ingest, refresh at night, serve the new model.

Shoppers are users the initial model never saw (a split's held-out users), in the order of their rows,
spread over D simulated days. Each day:

1. waits for a period boundary (``period_s``: the simulated day; production's is 86,400 s);
2. sends the day's visits through the API (``ops.sim.shoppers``): every list an impression on Kafka,
   every action an outcome, stamped with the clock (a shopper's actions ``step_s`` apart);
3. waits until the ingest worker has closed every group of the day (attribution window and lateness
   behind the clock: the worker's idle watermark advance closes them once traffic stops);
4. waits for the night's refresh: Celery beat ticks every few seconds, and the first tick after the
   period ends finds a complete period whose groups are all closed; the refresh trains on it, gates the
   candidate and publishes or rejects it;
5. if it published, waits until the API serves the new version (its registry watcher swaps it in).

So day d+1 is served by whatever the gate published at night d. With ``method=None`` (the control arm)
no worker or beat runs and the initial model serves every day. Everything it started is stopped at the
end; the stack's Postgres keeps its data under the run folder (``recast up --dir <run>/stack`` shows it).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from ops.sim import processes
from ops.sim.shoppers import ApiClient, Visit, simulate

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LoopConfig:
    days: int = 4
    period_s: int = 30  # one simulated day
    window_s: int = 10  # attribution window (production: 1800 s)
    lateness_s: int = 2
    schedule: str = "every 5s"  # beat's refresh ticks (production: nightly)
    method: str | None = "recast"  # the refresh's RL step; None: no refresh at all (the control arm)
    min_groups: int = 20
    step_s: float = 0.5  # seconds between one shopper's actions (inside the attribution window)
    seed: int = 0
    day_timeout_s: float = 900.0

    def __post_init__(self) -> None:
        if self.days < 1 or self.period_s < 5 or self.window_s < 1:
            raise ValueError("days >= 1, period_s >= 5 and window_s >= 1 are needed")
        if self.step_s * 4 >= self.window_s:
            raise ValueError(f"a shopper's four actions ({4 * self.step_s:g} s) must fit the window "
                             f"({self.window_s} s)")


@dataclass
class DayResult:
    day: int
    visits: int
    hits: int
    errors: dict
    versions: dict  # version -> lists served that day
    hit_by_visit: list
    all_zero: float | None = None  # share of the day's groups with no reward on the list
    refresh: dict | None = None  # the night's run: id, status, decision, reason, version, counts


@dataclass
class LoopResult:
    config: dict
    initial_version: str
    stack_ready_s: float
    api_ready_s: float
    days: list[DayResult] = field(default_factory=list)
    seconds: float = 0.0
    audit: dict | None = None  # the audit report of the loop's refreshes: path, runs, flagged per run

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


def split_days(visits: list[Visit], days: int) -> list[list[Visit]]:
    """The visits in their order, in ``days`` nearly equal consecutive parts.

    >>> [len(d) for d in split_days([Visit("u", [], str(i)) for i in range(10)], 3)]
    [4, 3, 3]
    """
    size, extra = divmod(len(visits), days)
    out, start = [], 0
    for d in range(days):
        end = start + size + (1 if d < extra else 0)
        out.append(visits[start:end])
        start = end
    return out


def loop_env(config: LoopConfig, run_dir: Path, data_dir: Path, train_csv: Path | None,
             gate_csv: Path | None) -> tuple[dict[str, str], str, str]:  # fmt: skip
    """The RECAST_* settings every process of the loop shares, plus a fresh storefront key and admin token."""
    key, admin = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    env = {
        "RECAST_DATA_DIR": str(data_dir), "RECAST_RUN_DIR": str(run_dir),
        "RECAST_ATTRIBUTION_WINDOW_S": str(config.window_s), "RECAST_REFRESH_SCHEDULE": config.schedule,
        "RECAST_REFRESH_PERIOD_S": str(config.period_s), "RECAST_REFRESH_METHOD": config.method or "none",
        "RECAST_REFRESH_MIN_GROUPS": str(config.min_groups), "RECAST_REGISTRY_POLL_S": "1",
        "RECAST_API_KEYS": hashlib.sha256(key.encode()).hexdigest(),
        "RECAST_ADMIN_TOKEN_SHA256": hashlib.sha256(admin.encode()).hexdigest(),
        "RECAST_SPOOL_DIR": str(run_dir / "spool"),
    }  # fmt: skip
    if train_csv is not None:
        env["RECAST_TRAIN_FILE"] = str(train_csv)
    if gate_csv is not None:
        env["RECAST_GATE_SPLIT"] = str(gate_csv)
    return env, key, admin


def run_loop(checkpoint: Path, days: list[list[Visit]], run_dir: Path, data_dir: Path, config: LoopConfig,
             train_csv: Path | None = None, gate_csv: Path | None = None,
             on_visit: Callable[[], None] | None = None,
             say: Callable[[str], None] = lambda _: None, audit_html: Path | None = None) -> LoopResult:  # fmt: skip
    """The loop of the module docstring; with ``audit_html``, the audit report of its refreshes is written there
    before the stack stops (``result.audit`` says where and what it flagged)."""
    from learner import registry
    from ops.stack import down, stop_learner, up
    from schemas.settings import Settings

    t0 = time.monotonic()
    run_dir.mkdir(parents=True, exist_ok=True)
    env, key, admin = loop_env(config, run_dir, data_dir, train_csv, gate_csv)
    settings = Settings()
    # A fresh stack every time: an earlier run's reward groups and registry would otherwise be read as this one's.
    down(run_dir / "stack")
    shutil.rmtree(run_dir / "stack", ignore_errors=True)
    say("starting the embedded stack" + (" and the learner (Celery worker and beat)" if config.method else ""))
    state = up(run_dir / "stack", [settings.impressions_topic, settings.outcomes_topic], settings.topic_partitions,
               celery=config.method is not None, env=env)  # fmt: skip
    env |= state.env()
    engine = create_engine(state.services["postgres"].url)
    api = ingest = None
    try:
        with engine.begin() as conn:
            initial = registry.register(conn, checkpoint).version
            registry.activate(conn, initial, actor="demo", reason="the initial SFT model")
        api, url = processes.start_api(env, run_dir / "logs" / "api.log")
        ingest = processes.recast_process(["ingest", "--group", f"loop-{uuid.uuid4().hex[:8]}", "--lateness-s",
                                           str(config.lateness_s), "--idle-advance-s", "1",
                                           "--alive", str(run_dir / "ingest.alive")],
                                          env, run_dir / "logs" / "ingest.log")  # fmt: skip
        api_ready_s = processes.wait_ready(url, api)
        result = LoopResult(asdict(config), initial, state.ready_s, api_ready_s)
        client = ApiClient(url, key)
        for d, visits in enumerate(days, start=1):
            result.days.append(_day(d, visits, client, url, admin, engine, config, on_visit, say))
        if audit_html is not None and config.method is not None:
            result.audit = _audit_report(engine, audit_html, say)
    finally:
        for proc in (api, ingest):
            if proc is not None:
                processes.stop(proc)
        engine.dispose()
        stop_learner(run_dir / "stack")
        down(run_dir / "stack")
    result.seconds = time.monotonic() - t0
    return result


def _day(d: int, visits: list[Visit], client: ApiClient, url: str, admin: str, engine, config: LoopConfig,
         on_visit, say) -> DayResult:  # fmt: skip
    start = _next_boundary(datetime.now(UTC), config.period_s)
    say(f"day {d}: {len(visits)} visits at {start:%H:%M:%S}")
    _sleep_until(start)
    stats = simulate(client, visits, seed=config.seed * 1000 + d, on_visit=on_visit, step_s=config.step_s)
    if datetime.now(UTC) >= start + timedelta(seconds=config.period_s):
        say(f"day {d}: its traffic ran past the period ({config.period_s} s); the next night learns the rest")
    deadline = time.monotonic() + config.day_timeout_s
    _wait(lambda: _open_groups(engine, stats.request_ids) == 0, deadline,
          f"day {d}: the ingest worker never closed the day's groups")
    day = DayResult(d, stats.visits, stats.hits, dict(stats.errors), dict(stats.versions), stats.hit_by_visit,
                    all_zero=_all_zero(engine, stats.request_ids))  # fmt: skip
    if config.method is None:
        return day
    night = start + timedelta(seconds=config.period_s)
    say(f"day {d}: groups closed; waiting for the refresh of the period ending {night:%H:%M:%S}")
    day.refresh = _wait(lambda: _night_run(engine, night), deadline, f"day {d}: no refresh read the day")
    if day.refresh["decision"] == "published":
        _wait(lambda: _served(url, admin) == day.refresh["version"], deadline,
              f"day {d}: the API never served {day.refresh['version']}")  # fmt: skip
    say(f"day {d}: refresh {day.refresh['status']} {day.refresh['decision'] or ''} {day.refresh['reason'] or ''}")
    return day


def _audit_report(engine, path: Path, say) -> dict | None:
    """Every refresh's audit snapshot of this loop in one HTML report (``recast audit --html``'s)."""
    from ops.audit.read import snapshots_up_to
    from ops.audit.report import write
    from schemas.audit import AuditFilter

    try:
        with engine.connect() as conn:
            runs = snapshots_up_to(conn, AuditFilter(), runs=500)
    except LookupError as exc:
        say(f"no audit report: {exc}")
        return None
    write(runs, path)
    return {"path": str(path), "runs": [r["run_id"] for r in runs],
            "flagged": {r["run_id"]: r["flagged"] for r in runs}, "last": runs[-1]}  # fmt: skip


def _next_boundary(now: datetime, period_s: int) -> datetime:
    """The next period boundary, at least half a second away (so the visits start inside the period)."""
    seconds = (now - EPOCH).total_seconds() + 0.5
    return EPOCH + timedelta(seconds=(seconds // period_s + 1) * period_s)


def _sleep_until(when: datetime) -> None:
    while (left := (when - datetime.now(UTC)).total_seconds()) > 0:
        time.sleep(min(left, 1.0))


def _wait(check, deadline: float, failure: str, every: float = 0.5):
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(failure)
        time.sleep(every)
    return value


def _open_groups(engine, request_ids: list[str]) -> int:
    """Lists of the day not yet closed as groups (not ingested yet, or their window still open)."""
    with engine.connect() as conn:
        closed = conn.execute(text("SELECT count(*) FROM reward_groups WHERE request_id = ANY(:ids) AND NOT "
                                   "window_open"), {"ids": request_ids}).scalar()  # fmt: skip
    return len(request_ids) - closed


def _all_zero(engine, request_ids: list[str]) -> float | None:
    with engine.connect() as conn:
        share = conn.execute(text("SELECT avg(all_zero::int) FROM reward_groups WHERE request_id = ANY(:ids)"),
                             {"ids": request_ids}).scalar()  # fmt: skip
    return None if share is None else float(share)


def _night_run(engine, night: datetime) -> dict | None:
    """The first refresh that read a window ending at or after ``night`` (skips before it read nothing)."""
    query = text(
        "SELECT id, status, decision, reason, result_version AS version, base_version, counts, "
        "extract(epoch FROM finished_at - started_at) AS seconds FROM training_runs "
        "WHERE kind = 'refresh' AND window_end >= :night AND (status IN ('succeeded', 'failed') "
        "OR (status = 'skipped' AND counts ? 'groups')) ORDER BY id LIMIT 1"
    )
    with engine.connect() as conn:
        row = conn.execute(query, {"night": night}).first()
    return None if row is None else {**row._mapping, "seconds": float(row.seconds or 0.0)}


def _served(url: str, admin: str) -> str | None:
    request = urllib.request.Request(f"{url}/v1/admin/model", headers={"Authorization": f"Bearer {admin}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.loads(resp.read())["version"]
    except OSError:
        return None
