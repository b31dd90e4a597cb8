"""The embedded stack requires credentials: made by `up`, kept owner-only, never on a command line or in a log."""

from __future__ import annotations

import shutil
import stat
import tempfile
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

from ops.stack import down, up
from ops.stack.servers import SECRETS_FILE


@pytest.fixture(scope="module")
def own_stack():
    root = Path(tempfile.mkdtemp(prefix="recast-test-secure-"))  # outside pytest's root: Postgres runs as another user
    try:
        yield up(root, ["t-imp", "t-out"], 1)
    finally:
        down(root)
        shutil.rmtree(root, ignore_errors=True)


def test_secrets_and_state_are_owner_only(own_stack):
    root = Path(own_stack.root)
    for name in (SECRETS_FILE, "state.json", "redis/redis.conf"):
        mode = stat.S_IMODE((root / name).stat().st_mode)
        assert mode == 0o600, f"{name}: {oct(mode)}"


def test_postgres_refuses_a_wrong_or_missing_password(own_stack):
    url = make_url(own_stack.services["postgres"].url)
    with psycopg.connect(host=url.host, port=url.port, user="postgres", password=url.password, dbname="recast") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    for password in ("wrong", None):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(host=url.host, port=url.port, user="postgres", password=password, dbname="recast",
                            connect_timeout=5)  # fmt: skip


def test_redis_refuses_a_client_without_the_password(own_stack):
    service = own_stack.services["redis"]
    assert redis.Redis.from_url(service.url, socket_timeout=2).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=service.port, socket_timeout=2).ping()


def test_passwords_appear_in_no_command_line_and_no_log(own_stack):
    root = Path(own_stack.root)
    secrets = (root / SECRETS_FILE).read_text()
    import json

    passwords = list(json.loads(secrets).values())
    for name in ("postgres", "redis", "kafka"):
        cmdline = Path(f"/proc/{own_stack.services[name].pid}/cmdline").read_bytes().decode(errors="replace")
        assert not any(p in cmdline for p in passwords), name
    for log in [*root.rglob("*.log"), *root.rglob("log")]:
        if log.is_file():
            text = log.read_text(errors="replace")
            assert not any(p in text for p in passwords), log
