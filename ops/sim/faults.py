"""Kill and restart one part of the running loop: the API, the ingest worker, the Celery worker, the broker,
Postgres. Each function returns when the part is back (its own readiness), and says what it did.

The API is stopped with SIGTERM (what an orchestrator sends: in-flight requests finish and the publisher
moves its in-memory queue to the spool); everything else with SIGKILL (or, for Postgres, an immediate
shutdown, which is a crash to its clients).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from ops.sim import processes
from ops.stack.embedded import StackState, start_learner
from ops.stack.servers import create_topics, port_open, start_kafka, start_postgres, stop_pid, wait_until


def restart_api(api: subprocess.Popen, env: dict, log: Path, url: str) -> subprocess.Popen:
    processes.stop(api)  # SIGTERM: drain, spool what is not yet on Kafka
    port = int(url.rsplit(":", 1)[1])
    proc, _ = processes.start_api(env, log, port=port)
    processes.wait_ready(url, proc)
    return proc


def restart_ingest(worker: subprocess.Popen, args: list[str], env: dict, log: Path, alive: Path) -> subprocess.Popen:
    """SIGKILL (the batch in flight was not committed; it comes again), restart, and wait until the new worker
    has joined its group and touched its health file."""
    worker.kill()
    worker.wait(timeout=30)
    alive.unlink(missing_ok=True)
    proc = processes.recast_process(args, env, log)
    wait_until(lambda: alive.exists() or proc.poll() is not None, "the ingest worker back", timeout=120)
    if proc.poll() is not None:
        raise RuntimeError(f"the restarted ingest worker exited ({proc.returncode}); see {log}")
    return proc


def kill_celery_worker(state: StackState, env: dict) -> None:
    """SIGKILL the Celery worker's whole process group (the pool's children too), then start a new one."""
    worker = state.services["worker"]
    try:
        os.killpg(worker.pid, signal.SIGKILL)  # started in its own session: its pid is the group's id
    except ProcessLookupError:
        pass
    wait_until(lambda: not Path(f"/proc/{worker.pid}").exists() or _zombie(worker.pid), "celery worker gone")
    state.services.pop("worker")
    state.save()
    start_learner(state, env)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] == "Z"
    except OSError:
        return True


def restart_broker(state: StackState, topics: list[str], partitions: int, outage_s: float) -> None:
    """SIGKILL the broker, leave it down ``outage_s``, start it on the same port and make the topics again
    (the embedded broker keeps everything in memory)."""
    kafka = state.services["kafka"]
    os.kill(kafka.pid, signal.SIGKILL)
    wait_until(lambda: not port_open(kafka.port), "broker down")
    time.sleep(outage_s)  # the outage itself: what the spool must absorb
    state.services["kafka"] = new = start_kafka(Path(state.root), port=kafka.port)
    state.save()
    wait_until(lambda: port_open(new.port), "broker back")
    create_topics(new.url, topics, partitions)


def restart_postgres(state: StackState, outage_s: float) -> None:
    """An immediate shutdown (no checkpoint, every session cut: a crash to its clients), then a restart."""
    from ops.stack.servers import _as_pg_user, _pg_bin

    pg = state.services["postgres"]
    pgdata = Path(state.root) / "postgres"
    subprocess.run([str(_pg_bin() / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "stop"],
                   capture_output=True, **_as_pg_user())  # fmt: skip
    wait_until(lambda: not port_open(pg.port), "postgres down")
    time.sleep(outage_s)
    state.services["postgres"] = start_postgres(Path(state.root), port=pg.port)
    state.save()


def stop_all(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            try:
                stop_pid(proc.pid)
            except ProcessLookupError:
                pass
