"""``recast chaos`` / ``make chaos``: the run described in :mod:`ops.sim.chaos`, its checks and its figures."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from sqlalchemy import create_engine, text

from ops.sim import faults, processes
from ops.sim.chaos import Books, Monitor, Traffic, timed
from ops.sim.loop import LoopConfig, loop_env
from ops.sim.shoppers import Visit


def wait(check, what: str, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)
    return value


def stored(engine, books: Books) -> tuple[set[str], set[str], int]:
    """Of what the traffic booked: the event ids and request ids in Postgres, and outcome rows beyond one per id."""
    with books.lock:
        events, lists = list(books.acked_events), list(books.served)
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT event_id, count(*) FROM outcomes WHERE event_id = ANY(:ids) "
                                      "GROUP BY event_id"), {"ids": events}).all()  # fmt: skip
            imps = conn.execute(text("SELECT request_id FROM impressions WHERE request_id = ANY(:ids)"),
                                {"ids": lists}).scalars().all()  # fmt: skip
    except Exception:  # Postgres restarting: not yet
        return set(), set(), 0
    return {e for e, _ in found}, set(imps), sum(n - 1 for _, n in found)


def spooled_request_ids(spool_dir: Path) -> set[str]:
    from schemas.events import parse_impression
    from serving.spool import decode

    ids = set()
    for segment in sorted(spool_dir.glob("*.seg")):
        for record in decode(segment.read_bytes())[0]:
            try:
                ids.add(parse_impression(record.value).request_id)
            except ValueError:
                continue  # an outcome
    return ids


def served_models_verified(engine, books: Books) -> dict:
    """Every version that served a list or was reported serving: registered, and its files still verify."""
    from learner.registry import RegistryError, get, verify_registered

    with books.lock:
        versions = set(books.served.values()) | {v for v in books.reported if v is not None}
        starting = books.reported.get(None, 0)  # the API restarting: nothing served yet, every request a 503
    bad = {}
    with engine.connect() as conn:
        for version in sorted(versions):
            try:
                verify_registered(get(conn, version))
            except RegistryError as exc:
                bad[version] = str(exc)
    return {"versions": sorted(versions), "unverified": bad, "samples_with_no_model": starting}


def refresh_runs(engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, status, decision, reason FROM training_runs WHERE kind = 'refresh' "
                                 "ORDER BY id")).all()  # fmt: skip
    return [dict(r._mapping) for r in rows]


def run_chaos(checkpoint: Path, visits: list[Visit], run_dir: Path, data_dir: Path, train_csv: Path | None,
              gate_csv: Path | None, rate: float = 4.0, phase_s: float = 20.0, outage_s: float = 5.0,
              say=print) -> dict:  # fmt: skip
    from learner import registry
    from ops.stack import down, stop_learner, up
    from schemas.settings import Settings

    config = LoopConfig(period_s=30, window_s=5, lateness_s=2, schedule="every 5s", min_groups=10, step_s=0.5)
    env, key, admin = loop_env(config, run_dir, data_dir, train_csv, gate_csv)
    env["RECAST_REFRESH_RL_STEPS"] = "40"  # a refresh long enough to be killed in the middle
    settings = Settings()
    topics = [settings.impressions_topic, settings.outcomes_topic]
    down(run_dir / "stack")
    shutil.rmtree(run_dir / "stack", ignore_errors=True)
    say("starting the stack, the learner, the API and the ingest worker")
    state = up(run_dir / "stack", topics, settings.topic_partitions, celery=True, env=env)
    env |= state.env()
    engine = create_engine(state.services["postgres"].url, pool_pre_ping=True)
    logs = run_dir / "logs"
    ingest_args = ["ingest", "--group", f"chaos-{uuid.uuid4().hex[:8]}", "--lateness-s", "2", "--idle-advance-s",
                   "1", "--alive", str(run_dir / "ingest.alive")]  # fmt: skip
    api = ingest = None
    books, result = Books(), {}
    try:
        with engine.begin() as conn:
            registry.activate(conn, registry.register(conn, checkpoint).version, actor="chaos", reason="initial")
        api, url = processes.start_api(env, logs / "api.log")
        ingest = processes.recast_process(ingest_args, env, logs / "ingest.log")
        processes.wait_ready(url, api)
        traffic, monitor = Traffic(url, key, visits, rate, books), Monitor(url, admin, books)
        traffic.start()
        monitor.start()
        found = []

        def phase(name: str) -> None:
            say(f"traffic for {phase_s:.0f} s, then: {name}")
            time.sleep(phase_s)

        phase("the API")
        holder = {}
        found.append(timed("API", "SIGTERM, restart", lambda: holder.update(
            api=faults.restart_api(api, env, logs / "api.log", url))))  # fmt: skip
        api = holder["api"]
        phase("an ingest worker")
        found.append(timed("ingest worker", "SIGKILL, restart", lambda: holder.update(
            ingest=faults.restart_ingest(ingest, ingest_args, env, logs / "ingest.log", run_dir / "ingest.alive"))))
        ingest = holder["ingest"]
        phase("the Celery worker, once a refresh runs")
        running = wait(lambda: [r for r in refresh_runs(engine) if r["status"] == "running"], "a running refresh",
                       timeout=600, every=0.2)  # fmt: skip
        killed_run = running[0]["id"]
        found.append(timed("Celery worker", f"SIGKILL during refresh run {killed_run}, restart",
                           lambda: faults.kill_celery_worker(state, env)))  # fmt: skip
        phase("the broker, once the worker has stored what was acknowledged")
        wait(lambda: _drained(engine, books), "the worker caught up before the broker fault", timeout=300)
        found.append(timed("broker", f"SIGKILL, {outage_s:g} s down, restart",
                           lambda: faults.restart_broker(state, topics, settings.topic_partitions, outage_s)))
        phase("Postgres")
        found.append(timed("Postgres", f"immediate shutdown, {outage_s:g} s down, restart",
                           lambda: faults.restart_postgres(state, outage_s)))  # fmt: skip
        phase("the end of the traffic")
        traffic.stop.set()
        traffic.join(timeout=60)
        say("traffic stopped; waiting for the pipeline to drain")
        try:
            wait(lambda: _drained(engine, books), "everything acknowledged stored", timeout=300)
        except TimeoutError as exc:
            say(f"warning: {exc}")
        wait(lambda: any(r["id"] > killed_run and r["status"] in ("succeeded", "skipped")
                         for r in refresh_runs(engine)), "a refresh after the killed one", timeout=600)  # fmt: skip
        monitor.stop.set()
        result = _books(engine, books, run_dir, found, killed_run)
    finally:
        faults.stop_all([api, ingest])
        engine.dispose()
        stop_learner(run_dir / "stack")
        down(run_dir / "stack")
    result["passwords_in_logs"] = _passwords_in_logs(run_dir)
    return result


def _drained(engine, books: Books) -> bool:
    events, lists, _ = stored(engine, books)
    with books.lock:
        return events >= books.acked_events and lists >= set(books.served)


def _books(engine, books: Books, run_dir: Path, found, killed_run: int) -> dict:
    events, lists, doubled = stored(engine, books)
    spooled = spooled_request_ids(run_dir / "spool") if (run_dir / "spool").exists() else set()
    with books.lock:
        lost_events = len(books.acked_events - events)
        missing_lists = len(set(books.served) - lists - spooled)
        summary = {"acked_events": len(books.acked_events), "served_lists": len(books.served),
                   "answers": dict(books.answers)}  # fmt: skip
    runs = refresh_runs(engine)
    killed = next(r for r in runs if r["id"] == killed_run)
    return {**summary, "events_lost": lost_events, "events_double_counted": doubled,
            "lists_without_impression": missing_lists, "lists_in_spool": len(spooled & set(books.served)),
            "models": served_models_verified(engine, books), "faults": [asdict(f) for f in found],
            "killed_refresh": killed, "refreshes": runs}  # fmt: skip


def _passwords_in_logs(run_dir: Path) -> int:
    from ops.stack.servers import SECRETS_FILE

    secrets_path = run_dir / "stack" / SECRETS_FILE
    if not secrets_path.exists():
        return 0
    passwords = list(json.loads(secrets_path.read_text()).values())
    hits = 0
    for log in [*run_dir.rglob("*.log"), *(run_dir / "stack").rglob("log")]:
        if log.is_file():
            content = log.read_text(errors="replace")
            hits += sum(p in content for p in passwords)
    return hits


def report(result: dict) -> str:
    lines = ["| fault | how | back after (s) |", "| --- | --- | --- |"]
    lines += [f"| {f['name']} | {f['how']} | {f['seconds']} |" for f in result["faults"]]
    models = result["models"]
    lines += [
        "",
        f"outcomes acknowledged (202): {result['acked_events']}; lost: {result['events_lost']}; "
        f"double-counted: {result['events_double_counted']}",
        f"lists served (200): {result['served_lists']}; without an impression in Postgres or the spool: "
        f"{result['lists_without_impression']} (in the spool at the end: {result['lists_in_spool']})",
        f"model versions that served: {', '.join(models['versions'])}; not registered or not verifying: "
        f"{len(models['unverified'])}",
        f"the killed refresh (run {result['killed_refresh']['id']}): {result['killed_refresh']['status']}; "
        f"refreshes: {[(r['id'], r['status'], r['decision']) for r in result['refreshes']]}",
        f"answers: {result['answers']}",
        f"stack passwords found in logs: {result['passwords_in_logs']}",
    ]
    return "\n".join(lines)


def passed(result: dict) -> bool:
    return (result["events_lost"] == 0 and result["events_double_counted"] == 0
            and result["lists_without_impression"] == 0 and not result["models"]["unverified"]
            and result["killed_refresh"]["status"] == "failed" and result["passwords_in_logs"] == 0)  # fmt: skip
