"""The ingestion worker against the real stack: Tansu and Postgres, no mocks.

Every test gets its own database, its own two topics and fresh consumer group ids, so the
tests are independent of each other and of the order they run in. The two fault tests force
their moment: the worker's write is held on locked tables, then the worker is killed or the
database ends its session; they wait on row counts, lock waits and log lines, never on time.
"""

from __future__ import annotations

import json
import threading
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
from kafka import KafkaProducer
from sqlalchemy import create_engine, func, select, text

from learner.ingest.consumer import IngestConfig, run
from ops.stack.servers import create_topics
from schemas.events import Impression, Outcome
from schemas.settings import Settings
from schemas.tables import DeadLetter, ImpressionRow, OutcomeRow, RewardGroup
from tests.support.cli import recast, recast_env, start_recast, stop
from tests.support.databases import fresh_database, locked_tables, refuse_connections, row_counts, waiting_on_locks
from tests.support.events import at, impression, outcome
from tests.support.kafka import BROKER_WAIT_S
from tests.support.logs import LogWatcher
from tests.support.wait import wait_for


class Pipeline:
    """A fresh database and fresh topics on the session's stack, and helpers to drive them."""

    def __init__(self, stack, tmp_path: Path, **settings):
        self._cleanup = ExitStack()
        url = self._cleanup.enter_context(fresh_database(stack, "ingest"))
        tag = uuid.uuid4().hex[:8]
        self.settings = Settings(
            database_url=url, kafka_bootstrap=stack.services["kafka"].url,
            impressions_topic=f"imp-{tag}", outcomes_topic=f"out-{tag}", **settings,
        )  # fmt: skip
        create_topics(self.settings.kafka_bootstrap, [self.settings.impressions_topic, self.settings.outcomes_topic], 4)
        self.engine = create_engine(url, pool_pre_ping=True)  # survives the outage test ending its sessions
        self._cleanup.callback(self.engine.dispose)
        self.producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all")
        self._cleanup.callback(self.producer.close)
        self.tmp = tmp_path

    @property
    def url(self) -> str:
        return self.settings.database_url

    def send(self, *events: Impression | Outcome | tuple[str, bytes]) -> int:
        for e in events:
            if isinstance(e, tuple):  # (topic kind, raw bytes): a malformed message
                topic = self.settings.impressions_topic if e[0] == "imp" else self.settings.outcomes_topic
                self.producer.send(topic, value=e[1])
                continue
            topic = self.settings.impressions_topic if isinstance(e, Impression) else self.settings.outcomes_topic
            self.producer.send(topic, key=e.user_id.encode(), value=e.model_dump_json().encode())
        self.producer.flush(timeout=BROKER_WAIT_S)
        return len(events)

    def ingest(self, max_events: int, group: str | None = None, **config):
        config = IngestConfig(
            group_id=group or f"g-{uuid.uuid4().hex[:8]}", max_events=max_events, max_seconds=90,
            alive_path=self.tmp / "alive", **config,
        )  # fmt: skip
        return run(self.settings, config)

    def env(self) -> dict[str, str]:
        """The environment of a ``recast ingest`` subprocess on this pipeline."""
        s = self.settings
        return recast_env(database_url=s.database_url, kafka_bootstrap=s.kafka_bootstrap,
                          impressions_topic=s.impressions_topic, outcomes_topic=s.outcomes_topic,
                          attribution_window_s=s.attribution_window_s)  # fmt: skip

    def scalar(self, stmt):
        with self.engine.connect() as conn:
            return conn.scalar(stmt)

    def groups(self) -> dict[str, RewardGroup]:
        with self.engine.connect() as conn:
            return {r.request_id: r for r in conn.execute(select(RewardGroup.__table__))}

    def counts(self) -> dict[str, int]:
        return row_counts(self.engine)

    def close(self):
        self._cleanup.close()


@pytest.fixture
def pipeline(stack, tmp_path):
    made = []

    def make(**settings) -> Pipeline:
        made.append(Pipeline(stack, tmp_path, **settings))
        return made[-1]

    yield make
    for p in made:
        p.close()


def test_duplicates_attribution_organic_closing_and_replay(pipeline):
    p = pipeline(attribution_window_s=100)
    events = [
        impression("r1", "u1", ["a", "b", "c"], 0),
        impression("r2", "u1", ["b", "d"], 10),  # u1's newer list also serves b
        impression("r3", "u2", ["a"], 0),
        outcome("e1", "u1", "b", "click", 20),  # -> r2 (most recent serving b)
        outcome("e2", "u1", "a", "purchase", 21),  # -> r1
        outcome("e3", "u1", "b", "add_to_cart", 22, rid="r1"),  # named -> r1
        outcome("e4", "u1", "z", "purchase", 23),  # organic for r1 and r2
        outcome("e5", "u2", "a", "click", 150),  # after r3's window: pending, never attributed
        # Both topics reach t=1000, so the watermark (the lesser of the two) passes every window above.
        impression("r9", "u3", ["q"], 1000),
        outcome("e6", "u3", "zz", "click", 1000),
    ]
    dupes = [events[0], events[3], events[3]]
    n = p.send(*events, *dupes)
    stats = p.ingest(n, lateness_s=0)
    assert (stats.messages, stats.impressions, stats.outcomes, stats.duplicates) == (13, 4, 6, 3)
    g = p.groups()
    assert g["r1"].rewards == [1.0, 0.5, 0.0] and g["r2"].rewards == [0.25, 0.0] and g["r3"].rewards == [0.0]
    assert [o["event_id"] for o in g["r1"].organic_positives] == ["e4"]
    assert [o["event_id"] for o in g["r2"].organic_positives] == ["e4"]
    assert {k for k, x in g.items() if x.window_open} == {"r9"}  # the rest closed by the watermark at t=1000
    assert g["r1"].closed_at is not None and g["r9"].closed_at is None
    assert (g["r1"].all_zero, g["r2"].all_zero, g["r3"].all_zero) == (False, False, True)
    assert g["r1"].closes_at == at(100)
    attributed = dict(p.engine.connect().execute(select(OutcomeRow.event_id, OutcomeRow.attributed_request_id)).all())
    assert attributed == {"e1": "r2", "e2": "r1", "e3": "r1", "e4": None, "e5": None, "e6": None}
    assert (Path(p.tmp) / "alive").exists()

    # Replay the whole of both topics with a new group: everything is a duplicate, nothing changes.
    before = (p.counts(), {k: (v.rewards, v.organic_positives) for k, v in g.items()})
    again = p.ingest(n)
    assert (again.messages, again.duplicates, again.impressions, again.outcomes) == (13, 13, 0, 0)
    assert (p.counts(), {k: (v.rewards, v.organic_positives) for k, v in p.groups().items()}) == before


def test_planner_statistics_are_refreshed_as_the_tables_grow(pipeline):
    p = pipeline()
    n = p.send(*(impression(f"r{i}", f"u{i}", ["a", "b"], i) for i in range(6)))
    p.ingest(n, batch_size=2, analyze_first_at=2)  # after 2 and 4 messages
    analyzed = text("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL")
    with p.engine.connect() as conn:
        assert {"impressions", "outcomes", "reward_groups"} <= set(conn.execute(analyzed).scalars())


def test_impressions_of_schema_1_and_2_are_stored_with_their_catalog_version(pipeline):
    """Services from before catalog versions send schema 1 without one; newer ones send schema 2 with one."""
    p = pipeline(attribution_window_s=100)
    old = json.loads(impression("r-old", "u1", ["a"], 0).model_dump_json())
    old["schema_version"] = 1
    del old["catalog_version"]
    new = impression("r-new", "u2", ["b"], 1).model_copy(update={"catalog_version": 3})
    none = impression("r-none", "u3", ["c"], 2)  # schema 2 from a service that knew no recorded version
    stats = p.ingest(p.send(("imp", json.dumps(old).encode()), new, none))
    assert (stats.impressions, stats.dead_letters) == (3, 0)
    with p.engine.connect() as conn:
        rows = conn.execute(select(ImpressionRow.request_id, ImpressionRow.schema_version,
                                   ImpressionRow.catalog_version)).all()  # fmt: skip
    assert sorted(rows) == [("r-new", 2, 3), ("r-none", 2, None), ("r-old", 1, None)]
    assert set(p.groups()) == {"r-old", "r-new", "r-none"}  # every one is a reward group


def test_outcomes_before_their_impression_are_attributed_when_it_arrives(pipeline):
    p = pipeline(attribution_window_s=100)
    group = f"g-{uuid.uuid4().hex[:8]}"
    early = [
        outcome("e1", "u1", "b", "purchase", 5),  # served by r1 (t=0): pending until r1 arrives
        outcome("e2", "u1", "x", "click", 6),  # off the list: organic of r1
        outcome("e3", "u1", "b", "click", -1),  # before r1 was served: never r1's
        outcome("e4", "u1", "b", "click", 200),  # after r1's window
    ]
    p.ingest(p.send(*early), group=group)
    assert p.groups() == {} and p.counts()["outcomes"] == 4
    # The same group resumes. The outcomes topic has reached t=200, past r1's window, but the impressions
    # topic only t=0: the watermark is the lesser, so r1 stays open even with no lateness allowed.
    p.ingest(p.send(impression("r1", "u1", ["a", "b"], 0)), group=group, lateness_s=0)
    r1 = p.groups()["r1"]
    assert r1.window_open
    assert r1.rewards == [0.0, 1.0] and not r1.all_zero
    assert r1.organic_positives == [{"item_id": "x", "type": "click", "event_id": "e2"}]
    assert p.scalar(select(func.count()).where(OutcomeRow.attributed_request_id == "r1")) == 1


def _result(p: Pipeline) -> tuple[dict, dict]:
    """Everything attribution decided: each group's rewards, organic positives and state, each outcome's credit."""
    groups = {k: (g.rewards, g.organic_positives, g.all_zero, g.window_open, g.opened_at, g.closes_at)
              for k, g in p.groups().items()}  # fmt: skip
    with p.engine.connect() as conn:
        credit = dict(conn.execute(select(OutcomeRow.event_id, OutcomeRow.attributed_request_id)).all())
    return groups, credit


def test_an_outcome_naming_an_unread_request_gets_the_same_groups_in_every_read_order(pipeline):
    impressions = [
        impression("r1", "u1", ["a", "b"], 0),
        impression("r2", "u1", ["b", "c"], 10),  # u1's other open list, which also serves b
        impression("r3", "u2", ["a"], 0),
    ]
    outcomes = [
        outcome("e1", "u1", "b", "purchase", 20, rid="r2"),  # named r2: r2's, never r1's
        outcome("e2", "u1", "z", "click", 21, rid="r2"),  # named, off the list: organic for r1 and r2
        outcome("e3", "u1", "a", "add_to_cart", 22, rid="r2"),  # named r2, served only by r1: r1's
        outcome("e4", "u1", "c", "click", 23),  # no request id, served only by r2
        outcome("e5", "u2", "a", "click", 5, rid="r3"),
    ]
    results = []
    for first, second in ((outcomes, impressions), (impressions, outcomes)):
        p = pipeline(attribution_window_s=100)
        group = f"g-{uuid.uuid4().hex[:8]}"
        p.ingest(p.send(*first), group=group)
        if first is outcomes:  # read before any impression: every named outcome is held, stored unattributed
            credited = select(func.count()).where(OutcomeRow.attributed_request_id.is_not(None))
            assert p.groups() == {} and p.scalar(credited) == 0
        p.ingest(p.send(*second), group=group, lateness_s=0)
        results.append(_result(p))
    assert results[0] == results[1]
    groups, credit = results[0]
    assert credit == {"e1": "r2", "e2": None, "e3": "r1", "e4": "r2", "e5": "r3"}
    assert groups["r1"][:2] == ([0.5, 0.0], [{"item_id": "z", "type": "click", "event_id": "e2"}])
    assert groups["r2"][:2] == ([1.0, 0.25], [{"item_id": "z", "type": "click", "event_id": "e2"}])
    assert groups["r3"][:2] == ([0.25], [])
    assert all(g[3] for g in groups.values())  # nothing closed: the windows end at t=100 and t=110


def test_a_held_outcome_falls_back_once_its_window_passes_and_keeps_the_fallback_open(pipeline):
    p = pipeline(attribution_window_s=100)
    group = f"g-{uuid.uuid4().hex[:8]}"
    # e1 names r-lost, whose impression never comes; u1's r1 serves b and is open at t=20.
    p.ingest(p.send(impression("r1", "u1", ["a", "b"], 0), outcome("e1", "u1", "b", "purchase", 20, rid="r-lost")),
             group=group, lateness_s=0)  # fmt: skip
    assert p.groups()["r1"].rewards == [0.0, 0.0] and p.groups()["r1"].organic_positives == []

    # Both topics reach t=115: r1's window (ends at 100) is over, but e1's (20 + 100 = 120) is not,
    # so e1 still waits and r1, where it may fall back, stays open.
    tick = [impression("r8", "u9", ["q"], 115), outcome("e8", "u9", "qq", "click", 115)]
    p.ingest(p.send(*tick), group=group, lateness_s=0)
    r1 = p.groups()["r1"]
    assert r1.window_open and r1.rewards == [0.0, 0.0]
    assert p.scalar(select(OutcomeRow.attributed_request_id).where(OutcomeRow.event_id == "e1")) is None

    # t=130 (a new worker run: the held outcome is found in the database): e1's window has passed, it falls
    # back to r1 as an outcome naming nothing would, and r1 closes in the same batch.
    tick = [impression("r9", "u9", ["q"], 130), outcome("e9", "u9", "qq", "click", 130)]
    stats = p.ingest(p.send(*tick), group=group, lateness_s=0)
    r1 = p.groups()["r1"]
    assert r1.rewards == [0.0, 1.0] and not r1.window_open and r1.closed_at is not None
    assert p.scalar(select(OutcomeRow.attributed_request_id).where(OutcomeRow.event_id == "e1")) == "r1"
    assert stats.credited == 1


def test_malformed_messages_are_dead_lettered_and_the_consumer_keeps_going(pipeline):
    p = pipeline()
    bad = [
        ("imp", b"not json at all"),
        ("imp", b"\xff\xfe\x00 not utf-8"),
        ("out", b'{"event_id": "x", "user_id": "u1", "item_id": "a", "type": "view", "ts": "2026-01-01T00:00:00Z"}'),
        ("out", b'{"event_id": "y", "user_id": "u1", "item_id": "a", "type": "click", "ts": "2026-01-01T00:00:00"}'),
        (
            "imp",
            b'{"request_id": "r9", "user_id": "u", "history": [], "model_version": "v", '
            b'"ts": "2026-01-01T00:00:00Z", "items": [{"item_id": "a", "score": 0.0, "rank": 2}]}',
        ),  # fmt: skip
        ("out", b""),
        # Valid JSON and a valid event, but Postgres cannot store U+0000: a dead letter, not a batch failing forever.
        (
            "out",
            b'{"event_id": "e\\u0000", "user_id": "u1", "item_id": "a", "type": "click", "ts": "2026-01-01T00:00:00Z"}',
        ),  # fmt: skip
    ]
    good = [impression("r1", "u1", ["a"], 0), outcome("e1", "u1", "a", "purchase", 1)]
    n = p.send(*bad[:3], good[0], *bad[3:], good[1])
    stats = p.ingest(n)
    assert stats.dead_letters == 7 and stats.impressions == 1 and stats.outcomes == 1
    assert p.groups()["r1"].rewards == [1.0]
    with p.engine.connect() as conn:
        rows = conn.execute(select(DeadLetter.payload, DeadLetter.reason, DeadLetter.topic)).all()
    by_payload = {r.payload: r.reason for r in rows}
    assert set(by_payload) == {raw for _, raw in bad}
    assert "U+0000" in by_payload[bad[6][1]]
    assert "type" in by_payload[bad[2][1]] and "ts" in by_payload[bad[3][1]] and "ranks" in by_payload[bad[4][1]]
    assert all(r.reason for r in rows)
    assert p.ingest(n).dead_letters == 0  # a replay dead-letters nothing twice
    assert p.counts()["dead"] == 7


def shoppers(users: range) -> list[Impression | Outcome]:
    """Per user: one list, a click then a purchase of its 2nd item, one off-list click."""
    events = []
    for u in users:
        t = u * 0.1
        events += [
            impression(f"r{u}", f"u{u}", ["a", "b", "c"], t),
            outcome(f"c{u}", f"u{u}", "b", "click", t + 1),
            outcome(f"p{u}", f"u{u}", "b", "purchase", t + 2),
            outcome(f"o{u}", f"u{u}", "z", "click", t + 3),
        ]
    return events


def stored(p: Pipeline, users: int, outcomes_per_user: int):
    """A check for wait_for: every impression and outcome of the first ``users`` users is in the tables."""
    want = {"impressions": users, "outcomes": outcomes_per_user * users}
    return lambda: {k: p.counts()[k] for k in want} == want


def test_sigkill_with_a_write_in_flight_then_restart_counts_exactly(pipeline, tmp_path):
    """`recast ingest` is SIGKILLed while a batch's transaction is open: the test holds the tables locked, so
    the worker's write of the second half waits inside Postgres when the kill lands. Nothing of that batch
    is stored or committed; the same group restarted resumes from the committed offsets (it reads exactly
    the second half) and every event is counted once."""
    p = pipeline(attribution_window_s=1800)
    users, half = 600, 300
    first, second = shoppers(range(half)), shoppers(range(half, users))
    group, alive = f"g-{uuid.uuid4().hex[:8]}", tmp_path / "worker.alive"
    proc = start_recast("ingest", "--group", group, "--batch-size", "40", "--max-seconds", "240",
                        "--alive", str(alive), "--no-check-items", env=p.env())  # fmt: skip
    try:
        p.send(*first)
        wait_for(stored(p, half, 3), "the worker stored the first half", timeout=90, state=p.counts)
        with locked_tables(p.url):
            p.send(*second)
            wait_for(lambda: waiting_on_locks(p.url) > 0, "the worker's write of the second half waits on the locks",
                     timeout=60, state=lambda: (proc.poll(), p.counts()))  # fmt: skip
            proc.kill()  # SIGKILL, its transaction open
            proc.wait(timeout=10)
    finally:
        stop(proc)
    assert p.counts() == {"impressions": half, "outcomes": 3 * half, "groups": half, "dead": 0}

    alive.unlink(missing_ok=True)
    restarted = recast("ingest", "--group", group, "--idle-exit-s", "3", "--max-seconds", "120",
                       "--alive", str(alive), "--no-check-items", env=p.env(), timeout=180)  # fmt: skip
    summary = json.loads(restarted.stdout.strip().splitlines()[-1])
    assert summary["messages"] == len(second) and summary["dead_letters"] == 0  # it resumed, it did not start over
    assert alive.exists()  # the compose health check's file
    assert p.counts() == {"impressions": users, "outcomes": 3 * users, "groups": users, "dead": 0}
    groups = p.groups()
    assert all(g.rewards == [0.0, 1.0, 0.0] for g in groups.values())
    assert all([o["event_id"] for o in g.organic_positives] == [f"o{k[1:]}"] for k, g in groups.items())
    assert p.scalar(select(func.count()).where(OutcomeRow.attributed_request_id.is_not(None))) == 2 * users


def test_database_outage_with_a_write_in_flight_loses_nothing(pipeline):
    """The database ends the worker's session while its write waits on locked tables, and refuses new sessions
    (as during a restart) until the worker has failed to write twice. The failed batches roll back, the
    consumer rewinds and retries, and the counts come out exact."""
    p = pipeline()
    users, half = 150, 75
    events = [[impression(f"r{u}", f"u{u}", ["a", "b"], u), outcome(f"e{u}", f"u{u}", "a", "add_to_cart", u + 1)]
              for u in range(users)]  # fmt: skip
    first, second = [e for pair in events[:half] for e in pair], [e for pair in events[half:] for e in pair]
    found: list = []
    worker = threading.Thread(target=lambda: found.append(p.ingest(2 * users, batch_size=20, retry_s=0.2)))
    with LogWatcher("recast.ingest") as log:
        try:
            worker.start()
            p.send(*first)
            wait_for(stored(p, half, 1), "the worker stored the first half", timeout=60, state=p.counts)
            with locked_tables(p.url):
                p.send(*second)
                wait_for(lambda: waiting_on_locks(p.url) > 0, "the worker's next write waits on the locks", timeout=60)
                refuse_connections(p.url)  # ends every session of the database, the waiting write's included
                log.wait_for("database unavailable", "the write failed, and a retry failed while refused", count=2)
        finally:
            refuse_connections(p.url, refuse=False)
            worker.join(timeout=120)
    assert not worker.is_alive(), "the worker did not finish after the database came back"
    (stats,) = found
    assert stats.db_retries >= 2 and stats.messages == 2 * users
    assert p.counts() == {"impressions": users, "outcomes": users, "groups": users, "dead": 0}
    assert all(g.rewards == [0.5, 0.0] for g in p.groups().values())
