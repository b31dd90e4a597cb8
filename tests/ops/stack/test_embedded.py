"""The embedded stack, against the real servers: they answer, bind 127.0.0.1 only, and carry events."""

import json
import os
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer

from schemas.events import Impression, ServedItem, parse_impression
from schemas.settings import Settings
from tests.support.cli import recast as run_recast
from tests.support.kafka import BROKER_WAIT_S, consume


def recast(*args: str) -> subprocess.CompletedProcess:
    return run_recast(*args, check=False, timeout=120)


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port``, read from /proc (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                found.add(address)
    return found


def test_status_shows_every_service_running(stack):
    proc = recast("status", "--dir", stack.root)
    assert proc.returncode == 0, proc.stderr
    for name in ("postgres", "kafka", "redis"):
        line = next(li for li in proc.stdout.splitlines() if li.startswith(name))
        assert "running" in line and stack.services[name].url in line
    services = json.loads(recast("status", "--dir", stack.root, "--json").stdout)["services"]
    assert {n: s["running"] for n, s in services.items()} == {"postgres": True, "kafka": True, "redis": True}


def test_status_without_a_stack_says_so(tmp_path):
    proc = recast("status", "--dir", str(tmp_path))
    assert proc.returncode == 1 and "no stack" in proc.stdout


def test_servers_bind_loopback_only(stack):
    loopback = {"0100007F"}  # 127.0.0.1 as /proc/net/tcp writes it
    for service in stack.services.values():
        assert listening_addresses(service.port) == loopback, service.name


def test_state_file_and_env(stack):
    state = json.loads((Path(stack.root) / "state.json").read_text())
    assert set(state["services"]) == {"postgres", "kafka", "redis"}
    env = stack.env()
    assert (
        Settings(**{k.removeprefix("RECAST_").lower(): v for k, v in env.items()}).redis_url == env["RECAST_REDIS_URL"]
    )


def test_redis_answers(stack):
    import redis

    client = redis.Redis.from_url(stack.services["redis"].url, socket_timeout=2)
    client.set("recast:test", "1", ex=10)
    assert client.get("recast:test") == b"1"
    client.close()


def test_topics_exist_with_their_partitions(stack):
    settings = Settings()
    consumer = KafkaConsumer(bootstrap_servers=stack.services["kafka"].url)
    try:
        for topic in (settings.impressions_topic, settings.outcomes_topic):
            assert consumer.partitions_for_topic(topic) == set(range(settings.topic_partitions))
    finally:
        consumer.close()


def test_produce_consume_round_trip_resumes_from_committed_offsets(stack):
    bootstrap, topic = stack.services["kafka"].url, Settings().impressions_topic
    group = f"test-{uuid.uuid4().hex[:8]}"  # fresh: Tansu may leave a reused group without assignments
    tag = uuid.uuid4().hex[:6]

    def event(i: int) -> Impression:
        return Impression(
            request_id=f"{tag}-{i}", user_id=f"u{i % 3}", history=["1", "2"], model_version="v1",
            items=[ServedItem(item_id="42", score=-0.1, rank=1)], ts=datetime.now(UTC),
        )  # fmt: skip

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    try:
        for i in range(10):
            producer.send(topic, key=f"u{i % 3}".encode(), value=event(i).model_dump_json().encode())
        producer.flush(timeout=BROKER_WAIT_S)
        first = [parse_impression(r.value)
                 for r in consume(bootstrap, [topic], lambda rs: len(rs) >= 10, "10 events", group=group, commit=True)]
        assert sorted(e.request_id for e in first) == sorted(f"{tag}-{i}" for i in range(10))

        for i in range(10, 15):
            producer.send(topic, key=f"u{i % 3}".encode(), value=event(i).model_dump_json().encode())
        producer.flush(timeout=BROKER_WAIT_S)
        # The same group resumes after its commit: only the five new events, none of the first ten again.
        second = [parse_impression(r.value)
                  for r in consume(bootstrap, [topic], lambda rs: len(rs) >= 5, "5 events", group=group, commit=True)]
        assert sorted(e.request_id for e in second) == sorted(f"{tag}-{i}" for i in range(10, 15))
    finally:
        producer.close()


def test_cli_up_status_down(tmp_path):
    root = str(tmp_path / "stack")
    try:
        started = recast("up", "--dir", root)
        assert started.returncode == 0, started.stderr
        assert "all ready in" in started.stdout and "export RECAST_DATABASE_URL=" in started.stdout
        assert "already running" in recast("up", "--dir", root).stdout
        assert recast("status", "--dir", root).returncode == 0
    finally:
        stopped = recast("down", "--dir", root)
    assert stopped.returncode == 0 and "stopped: " in stopped.stdout
    assert recast("status", "--dir", root).returncode == 1


def test_a_stale_state_file_never_gets_an_unrelated_process_signalled(tmp_path):
    from ops.stack import StackState, down, status
    from ops.stack.servers import Service, free_port

    # After a reboot the recorded pid may belong to anything; here it is this very test process.
    me = Service("kafka", os.getpid(), free_port(), "127.0.0.1:1", str(tmp_path / "kafka.log"))
    StackState(str(tmp_path), services={"kafka": me}).save()
    assert status(tmp_path) == {"kafka": False}
    down(tmp_path)  # must not SIGTERM us; reaching the next line proves it
    assert status(tmp_path) is None


def test_up_with_celery_runs_the_learner_beside_the_servers(tmp_path):
    from ops.stack import StackState
    from ops.stack.servers import pid_alive

    root = tmp_path / "stack"
    try:
        started = recast("up", "--dir", str(root), "--celery")
        assert started.returncode == 0, started.stderr
        state = StackState.load(root)
        lines = recast("status", "--dir", str(root)).stdout.splitlines()
        assert {li.split()[0]: li.split()[1] for li in lines} == {n: "running" for n in
                                                                   ("kafka", "redis", "postgres", "worker", "beat")}
        # The stack's worker takes a task from the stack's Redis and records the attempt in the stack's Postgres.
        env = {**state.env(), "RECAST_RUN_DIR": str(tmp_path / "runs")}
        enqueued = run_recast("refresh", "--enqueue", "--wait-s", "120", env=env, timeout=180)
        assert json.loads(enqueued.stdout)["reason"] == "no active model in the registry to start from"
    finally:
        recast("down", "--dir", str(root))
    assert not any(pid_alive(state.services[name].pid) for name in ("worker", "beat"))
