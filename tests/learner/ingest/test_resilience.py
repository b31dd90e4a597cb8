"""Faults a production worker meets: a real Postgres restart, and a worker of a group dying.

Both run against real servers: a Postgres of the test's own (so stopping it disturbs no
other test) and the session's Tansu broker, with fresh topics and group ids. Each forces
the moment it claims (the server stops while a write waits in it; the worker dies once it
owns partitions and has committed its share) and waits on state, never on time.
"""

from __future__ import annotations

import json
import subprocess
import threading
import uuid

from sqlalchemy import create_engine, select

from learner.ingest.consumer import IngestConfig, run
from ops.stack.servers import create_topics, start_postgres, stop_postgres
from schemas.settings import Settings
from schemas.tables import RewardGroup
from tests.support.cli import recast_env, start_recast, stop
from tests.support.databases import fresh_database, locked_tables, row_counts, waiting_on_locks
from tests.support.events import impression, outcome, send_events
from tests.support.kafka import committed_total, group_members
from tests.support.logs import LogWatcher
from tests.support.wait import wait_for


def fresh_settings(kafka: str, database_url: str, **extra) -> Settings:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(database_url=database_url, kafka_bootstrap=kafka, impressions_topic=f"imp-{tag}",
                        outcomes_topic=f"out-{tag}", **extra)  # fmt: skip
    create_topics(kafka, [settings.impressions_topic, settings.outcomes_topic], 4)
    return settings


def test_a_real_postgres_restart_with_a_write_in_flight_loses_nothing(stack, tmp_path):
    """The server itself stops (pg_ctl stop -m fast: every session ends, the port closes) while the worker's
    write of the second half waits in it on locked tables, stays down until the worker has failed twice,
    and comes back on the same port; the worker rewinds the failed batches and the counts come out exact."""
    root = tmp_path / "own-postgres"
    server = start_postgres(root)
    try:
        with fresh_database(server.url, "ingest") as url:
            settings = fresh_settings(stack.services["kafka"].url, url)
            users, half = 300, 150
            events = [[impression(f"r{u}", f"u{u}", ["a", "b"], u), outcome(f"e{u}", f"u{u}", "b", "purchase", u + 1)]
                      for u in range(users)]  # fmt: skip
            engine = create_engine(url, pool_pre_ping=True)
            found: list = []
            config = IngestConfig(group_id=f"g-{uuid.uuid4().hex[:8]}", max_events=2 * users, max_seconds=180,
                                  batch_size=20, retry_s=0.3, alive_path=tmp_path / "alive")  # fmt: skip
            worker = threading.Thread(target=lambda: found.append(run(settings, config)))
            stopped = False
            with LogWatcher("recast.ingest") as log:
                try:
                    worker.start()
                    send_events(settings, [e for pair in events[:half] for e in pair])
                    wait_for(lambda: row_counts(engine)["outcomes"] == half, "the worker stored the first half",
                             timeout=60, state=lambda: row_counts(engine))  # fmt: skip
                    engine.dispose()
                    with locked_tables(url):
                        send_events(settings, [e for pair in events[half:] for e in pair])
                        wait_for(lambda: waiting_on_locks(url) > 0, "the worker's next write waits on the locks",
                                 timeout=60)  # fmt: skip
                        stopped = True
                        stop_postgres(root)  # the write in flight dies with the server
                    log.wait_for("database unavailable", "the write failed, and a retry failed while down", count=2)
                finally:
                    if stopped:  # (on a failure before the stop, a restart attempt would only hide the error)
                        start_postgres(root, port=server.port)
                    worker.join(timeout=180)
            assert not worker.is_alive(), "the worker did not finish after Postgres came back"
            (stats,) = found
            assert stats.db_retries >= 2 and stats.messages == 2 * users
            assert row_counts(engine) == {"impressions": users, "outcomes": users, "groups": users, "dead": 0}
            with engine.connect() as conn:
                assert all(r.rewards == [0.0, 1.0] for r in conn.execute(select(RewardGroup.__table__)))
            engine.dispose()
    finally:
        stop_postgres(root)


def test_a_worker_of_a_group_dies_and_the_other_takes_over_its_partitions(stack, tmp_path):
    """Two `recast ingest` processes share one group (4 partitions per topic). Once the group is settled with
    both (each owns partitions) and has committed the whole first half, one is SIGKILLed. The second half,
    keyed over every partition, is sent once the broker has settled the group on the survivor alone; it can
    only be counted if the survivor took the dead worker's partitions over, from their committed offsets.
    Every event must be counted exactly once, and the survivor must not have read everything itself."""
    with fresh_database(stack, "rebalance") as url:
        settings = fresh_settings(stack.services["kafka"].url, url, attribution_window_s=1800)
        kafka, users, group = settings.kafka_bootstrap, 400, f"g-{uuid.uuid4().hex[:8]}"

        def sessions(us: range):
            return [e for u in us for e in (impression(f"r{u}", f"u{u}", ["a", "b", "c"], u * 0.1),
                                            outcome(f"c{u}", f"u{u}", "b", "click", u * 0.1 + 1),
                                            outcome(f"o{u}", f"u{u}", "z", "click", u * 0.1 + 2))]  # fmt: skip

        env = recast_env(database_url=url, kafka_bootstrap=kafka, attribution_window_s=1800,
                         impressions_topic=settings.impressions_topic,
                         outcomes_topic=settings.outcomes_topic)  # fmt: skip

        def worker(name: str, *extra: str):
            return start_recast("ingest", "--group", group, "--batch-size", "25", "--alive",
                                str(tmp_path / f"{name}.alive"), "--no-check-items", *extra, env=env,
                                stdout=subprocess.PIPE)  # fmt: skip

        engine = create_engine(url)
        doomed = worker("doomed", "--max-seconds", "240")
        # Idle exit only counts while partitions are assigned and nothing comes; 20 s outlasts the wait for the
        # broker to drop the dead member (the 6 s session timeout) and the rejoin.
        survivor = worker("survivor", "--idle-exit-s", "20", "--max-seconds", "300")
        try:
            both = wait_for(lambda: len(group_members(kafka, group)) == 2 and group_members(kafka, group),
                            "the group settled with both workers", timeout=60,
                            state=lambda: (doomed.poll(), survivor.poll()))  # fmt: skip
            first = send_events(settings, sessions(range(users // 2)))
            wait_for(lambda: committed_total(kafka, group) == first, "the group committed the whole first half",
                     timeout=90, state=lambda: (committed_total(kafka, group), row_counts(engine)))  # fmt: skip
            doomed.kill()
            doomed.wait(timeout=10)
            left = wait_for(lambda: len(group_members(kafka, group)) == 1 and group_members(kafka, group),
                            "the broker settled the group on the survivor alone", timeout=60)  # fmt: skip
            assert set(left) < set(both)
            second = send_events(settings, sessions(range(users // 2, users)))
            out, _ = survivor.communicate(timeout=240)
        finally:
            for proc in (doomed, survivor):
                stop(proc)
        assert survivor.returncode == 0
        summary = json.loads(out.strip().splitlines()[-1])
        assert 0 < summary["messages"] < first + second  # the dead worker had done its share of the first half
        assert row_counts(engine) == {"impressions": users, "outcomes": 2 * users, "groups": users, "dead": 0}
        with engine.connect() as conn:
            groups = list(conn.execute(select(RewardGroup.__table__)))
        assert all(g.rewards == [0.0, 0.25, 0.0] for g in groups)
        assert all([o["event_id"] for o in g.organic_positives] == [f"o{g.request_id[1:]}"] for g in groups)
        engine.dispose()
