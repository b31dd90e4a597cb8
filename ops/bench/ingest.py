"""Ingestion throughput: synthetic sessions from the data set -> Kafka -> reward groups in Postgres.

Starts its own embedded stack (``ops.stack.up``: Postgres, the Tansu broker and Redis on
127.0.0.1) in a temporary folder, builds sessions from the users of ``valid.csv``, produces
them, runs the ingestion worker (``recast ingest`` as a subprocess, as in production) until
it has read every message, and stops the stack again. It reports:

- events produced and the produce rate;
- end-to-end events/s into reward groups, from the first consumed batch (the start of its
  database transaction, right after its poll and parse: optimistic by at most one batch's
  fetch and parse) to the last offset commit (each worker reports when it made its last);
  the worker's own rate, group join included, is shown beside it;
- consumer lag (end offsets minus committed offsets over both topics), sampled over time;
- count queries proving nothing was lost or counted twice: impressions, reward groups,
  outcomes and credited outcomes equal what was produced, and every group's rewards and
  organic positives equal what the pure attribution rules (``learner.ingest.attribution``)
  predict for the same events.

A session is one row of the data set: the user's history, an impression of 10 served items
(scores and ranks; the row's next item is on the list about half the time), then a few
outcomes: clicks on served items, fewer add-to-carts, few purchases, and now and then an
off-list (organic) engagement, often the item the user really went on to buy. Everything is
produced before the worker starts, so the worker drains a backlog: its rate is sustained
throughput, not the rate of the producer.

Event time is compressed so that the whole run lies inside one attribution window: no group
closes during the run and the result does not depend on the order in which the worker reads
partitions. Closing is the one rule whose timing depends on reading progress, and no group
closes here, so the prediction is exact. (An outcome naming a request the worker has not
read yet is held until that impression arrives, so it cannot land on another list of the
same user.) The sessions still serve no item twice to one user, and organic items are on no
list of their user. Most on-list outcomes name their request id; the rest name none.

    python -m ops.bench.ingest                      # or: make bench-ingest
    python -m ops.bench.ingest --events 100000 --json runs/bench_ingest.json
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # event time of the first session: fixed, so runs are comparable
SERVED = 10
SPAN_S = 900.0  # event-time span of all sessions; well inside the default 1800 s window


# ---------------------------------------------------------------- synthetic sessions


@dataclass
class Workload:
    """The events to produce, in order, and what the attribution rules predict for them."""

    impressions: list = field(default_factory=list)  # schemas.events.Impression
    outcomes: list = field(default_factory=list)  # schemas.events.Outcome
    order: list = field(default_factory=list)  # ("imp" | "out", index) in production order
    predicted: dict = field(default_factory=dict)  # request_id -> (rewards, sorted organic event ids)
    credited: int = 0  # outcomes the rules put on a served list
    organic: int = 0  # outcomes off every list of their user

    @property
    def events(self) -> int:
        return len(self.impressions) + len(self.outcomes)


def load_rows(data: Path) -> tuple[list[dict], list[str], list[int]]:
    """The rows of ``valid.csv`` and the catalog with popularity weights (count of appearances + 1)."""
    with (data / "valid.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"no rows in {data / 'valid.csv'}")
    counts = Counter()
    for r in rows:
        counts[r["item_id"]] += 1
        counts.update(str(i) for i in ast.literal_eval(r["history_item_id"]))
    items_path = data / "items.json"
    catalog = sorted(json.loads(items_path.read_text(encoding="utf-8"))) if items_path.exists() else sorted(counts)
    return rows, catalog, [counts.get(i, 0) + 1 for i in catalog]


def build(data: Path, target_events: int, seed: int, window_s: int, weights: dict[str, float]) -> Workload:
    """Sessions until at least ``target_events`` events; rows are reused (as new users) when they run out."""
    from schemas.events import Impression, Outcome, ServedItem

    rows, catalog, popularity = load_rows(data)
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:6]
    sessions = max(1, target_events // 6)  # ~6 events a session on average: a first guess for the time step
    step = min(1.0, SPAN_S / sessions)
    served_by_user: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    plan = []  # (impression, [(item, type, request_id_or_none, dt, organic)])
    n_events, i = 0, 0
    while n_events < target_events:
        row = rows[i % len(rows)]
        cycle = i // len(rows)
        user = row["user_id"] if cycle == 0 else f"{row['user_id']}~{cycle}"
        history = [str(h) for h in ast.literal_eval(row["history_item_id"])][-50:]
        target = row["item_id"]
        # No item is served twice to one user (see the module's note on reading order).
        shown_before = {it for _, s in served_by_user[user] for it in s}
        served: list[str] = []
        if rng.random() < 0.5 and target not in shown_before:
            served.append(target)  # the model got it right this time
        while len(served) < SERVED:
            item = rng.choices(catalog, popularity)[0]
            if item not in served and item not in history and item not in shown_before:
                served.append(item)
        rng.shuffle(served)
        scores = sorted((rng.uniform(-12.0, -0.5) for _ in served), reverse=True)
        ts = T0 + timedelta(seconds=i * step)
        rid = f"bench-{tag}-{i}"
        imp = Impression(
            request_id=rid, user_id=user, segment=rng.choice(["default", "new", "returning"]), history=history,
            items=[ServedItem(item_id=it, score=s, rank=r + 1) for r, (it, s) in enumerate(zip(served, scores))],
            model_version="bench-v1", ts=ts,
        )  # fmt: skip
        served_by_user[user].append((rid, served))
        acts = []
        for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):  # clicks on the list, the target more likely
            item = target if target in served and rng.random() < 0.5 else rng.choice(served)
            acts.append((item, "click", False))
            if rng.random() < 0.3:
                acts.append((item, "add_to_cart", False))
                if rng.random() < 0.35:
                    acts.append((item, "purchase", False))
        if rng.random() < 0.3:  # off the list: the item the user really chose when it was not served
            acts.append((target if target not in served else rng.choices(catalog, popularity)[0], "click", True))
            if rng.random() < 0.3:
                acts.append((acts[-1][0], "purchase", True))
        plan.append((imp, acts))
        n_events += 1 + len(acts)
        i += 1

    work = Workload()
    groups: dict[str, list] = defaultdict(list)  # user -> attribution.Group, for the prediction
    from learner.ingest.attribution import Group, PendingOutcome, attribute, closes_at

    for imp, acts in plan:
        user, rid = imp.user_id, imp.request_id
        all_served = {it for _, s in served_by_user[user] for it in s}
        work.order.append(("imp", len(work.impressions)))
        work.impressions.append(imp)
        items = [it.item_id for it in imp.items]
        groups[user].append(Group(rid, user, items, [0.0] * len(items), [], imp.ts, closes_at(imp.ts, window_s)))
        for j, (item, kind, organic) in enumerate(acts):
            if organic and item in all_served:  # served to this user some other time: pick a truly off-list one
                while item in all_served:
                    item = rng.choice(catalog)
            named = rid if not organic and rng.random() < 0.8 else None
            out = Outcome(event_id=f"{rid}-o{j}", user_id=user, request_id=named, item_id=item, type=kind,
                          ts=imp.ts + timedelta(seconds=5 + 10 * j + rng.uniform(0, 5)))  # fmt: skip
            work.order.append(("out", len(work.outcomes)))
            work.outcomes.append(out)
            work.organic += organic
    # The pure rules, applied in event-time order (impressions first at equal times, as the worker does).
    events = [(e.ts, 0, e.request_id, e) for e in work.impressions] + [(e.ts, 1, e.event_id, e) for e in work.outcomes]
    events.sort(key=lambda t: t[:3])
    opened: dict[str, list] = defaultdict(list)
    by_rid = {g.request_id: g for gs in groups.values() for g in gs}
    for _, kind, _, e in events:
        if kind == 0:
            opened[e.user_id].append(by_rid[e.request_id])
        else:
            pending = PendingOutcome(e.event_id, e.user_id, e.request_id, e.item_id, e.type, e.ts)
            got = attribute(opened[e.user_id], pending, weights)
            work.credited += got is not None
    work.predicted = {g.request_id: (g.rewards, sorted(p["event_id"] for p in g.organic)) for g in by_rid.values()}
    return work


# ---------------------------------------------------------------- producing and watching


def produce(work: Workload, bootstrap: str, imp_topic: str, out_topic: str, progress) -> tuple[float, dict]:
    """Send every event (acks=all, keyed by user); returns the seconds it took (flush included) and the end
    offset of every partition, from the broker's acknowledgements.

    The end offsets come from the acks because this Tansu build answers ListOffsets(latest) with a
    count of record batches rather than of records (100 records in one batch: end offset 1)."""
    from kafka import KafkaProducer, TopicPartition

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=256 * 1024)
    futures = []
    t0 = time.monotonic()
    try:
        for n, (kind, k) in enumerate(work.order, 1):
            e = work.impressions[k] if kind == "imp" else work.outcomes[k]
            futures.append(producer.send(imp_topic if kind == "imp" else out_topic, key=e.user_id.encode(),
                                         value=e.model_dump_json().encode()))  # fmt: skip
            if n % 5000 == 0:
                progress(f"produced {n:,}/{work.events:,}")
        producer.flush(timeout=120)
        seconds = time.monotonic() - t0
        end: dict = {}
        for f in futures:
            md = f.get(timeout=10)
            tp = TopicPartition(md.topic, md.partition)
            end[tp] = max(end.get(tp, 0), md.offset + 1)
    finally:
        producer.close()
    return seconds, end


class LagSampler(threading.Thread):
    """Samples the group's lag (end offsets minus committed offsets, both topics) every ``every`` seconds."""

    def __init__(self, bootstrap: str, group: str, end: dict, every: float, stop_after: float):
        super().__init__(daemon=True)
        from kafka import KafkaAdminClient

        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-lag")
        self.end = end  # fixed: everything was produced before the worker starts
        self.group, self.every, self.stop_after = group, every, stop_after
        self.total = sum(self.end.values())
        self.samples: list[tuple[float, int]] = []  # (Unix time, lag)
        self.done = threading.Event()

    def lag(self) -> int:
        committed = self.admin.list_group_offsets({self.group: list(self.end)}).get(self.group, {})
        return sum(end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
                   for tp, end in self.end.items())  # fmt: skip

    def run(self) -> None:
        deadline = time.monotonic() + self.stop_after
        while not self.done.is_set() and time.monotonic() < deadline:
            try:
                self.samples.append((time.time(), self.lag()))
            except Exception as exc:  # the group not known yet, a slow answer: the next sample will tell
                self.samples.append((time.time(), -1))
                print(f"  lag sample failed: {exc}", file=sys.stderr)
            if self.samples[-1][1] == 0:
                break
            self.done.wait(self.every)

    def close(self) -> None:
        """Stop sampling, take one last sample (the worker has exited by now) and close the client."""
        self.done.set()
        self.join(timeout=10)
        try:
            if not self.samples or self.samples[-1][1] != 0:
                self.samples.append((time.time(), self.lag()))
        except Exception as exc:
            print(f"  last lag sample failed: {exc}", file=sys.stderr)
        finally:
            self.admin.close()


# ---------------------------------------------------------------- verification


def verify(database_url: str, work: Workload) -> dict:
    """Count queries against what was produced, and every group against the rules' prediction."""
    from sqlalchemy import create_engine, text

    expected = {
        "impressions": len(work.impressions),
        "reward_groups": len(work.impressions),
        "outcomes": len(work.outcomes),
        "credited_outcomes": work.credited,
        "dead_letters": 0,
        "reward_sum": round(sum(sum(r) for r, _ in work.predicted.values()), 4),
        "organic_positives": sum(len(o) for _, o in work.predicted.values()),
    }
    queries = {
        "impressions": "SELECT count(*) FROM impressions",
        "reward_groups": "SELECT count(*) FROM reward_groups",
        "outcomes": "SELECT count(*) FROM outcomes",
        "credited_outcomes": "SELECT count(*) FROM outcomes WHERE attributed_request_id IS NOT NULL",
        "dead_letters": "SELECT count(*) FROM dead_letters",
        "reward_sum": "SELECT coalesce(sum(r::float), 0) FROM reward_groups, jsonb_array_elements_text(rewards) r",
        "organic_positives": "SELECT coalesce(sum(jsonb_array_length(organic_positives)), 0) FROM reward_groups",
    }
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            found = {k: conn.scalar(text(q)) for k, q in queries.items()}
            found["reward_sum"] = round(float(found["reward_sum"]), 4)
            rows = conn.execute(text("SELECT request_id, rewards, organic_positives FROM reward_groups")).all()
            dupes = conn.scalar(text("SELECT count(*) FROM (SELECT event_id FROM outcomes GROUP BY event_id "
                                     "HAVING count(*) > 1) d"))  # fmt: skip
    finally:
        engine.dispose()
    mismatched, examples = 0, []
    for rid, rewards, organic in rows:
        want = work.predicted.get(rid)
        got = ([float(x) for x in rewards], sorted(o["event_id"] for o in organic))
        if want is None or got[0] != want[0] or got[1] != want[1]:
            mismatched += 1
            if len(examples) < 5:
                examples.append({"request_id": rid, "expected": want, "found": got})
    expected["groups_differing_from_rules"], found["groups_differing_from_rules"] = 0, mismatched
    expected["duplicate_outcome_ids"], found["duplicate_outcome_ids"] = 0, dupes
    checks = {k: {"expected": expected[k], "found": found[k], "ok": expected[k] == found[k]} for k in expected}
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks, "differing_examples": examples}


# ---------------------------------------------------------------- the run


def bench(events: int, data: Path, seed: int = 0, batch_size: int = 2000, partitions: int = 4,
          worker_timeout_s: float = 300.0, sample_every_s: float = 0.5, quiet: bool = False,
          workers: int = 1) -> dict:  # fmt: skip
    from ops.stack import down, up
    from schemas.settings import Settings

    def progress(msg: str) -> None:
        if not quiet:
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    settings = Settings()
    t_build = time.monotonic()
    work = build(data, events, seed, settings.attribution_window_s, settings.reward_weights)
    progress(f"built {len(work.impressions):,} impressions + {len(work.outcomes):,} outcomes "
             f"in {time.monotonic() - t_build:.1f} s")  # fmt: skip
    topics = [settings.impressions_topic, settings.outcomes_topic]
    with tempfile.TemporaryDirectory(prefix="recast-bench-ingest-") as tmp:
        root = Path(tmp) / "stack"
        try:
            state = up(root, topics, partitions)
            progress(f"stack up in {state.ready_s:.1f} s: kafka {state.services['kafka'].url}")
            bootstrap, db = state.services["kafka"].url, state.services["postgres"].url
            produce_s, end = produce(work, bootstrap, *topics, progress)
            progress(f"produced {work.events:,} events in {produce_s:.2f} s")
            group = f"bench-{uuid.uuid4().hex[:8]}"
            sampler = LagSampler(bootstrap, group, end, sample_every_s, worker_timeout_s)
            if sampler.total != work.events:
                raise RuntimeError(f"the broker acknowledged {sampler.total} offsets for {work.events} events")
            env = {**os.environ, "PYTHONPATH": str(ROOT), **state.env()}
            argv = [sys.executable, "-m", "ops.cli", "ingest", "--group", group, "--batch-size", str(batch_size),
                    "--max-seconds", str(worker_timeout_s)]  # fmt: skip
            # One worker stops at the event count; several (a consumer group) cannot know their share, so each
            # stops once it has had nothing to read for a few seconds, the lag sampler having seen zero.
            stop = ["--max-events", str(work.events)] if workers == 1 else ["--idle-exit-s", "3"]
            t_start, t_start_wall = time.monotonic(), time.time()
            procs = [subprocess.Popen([*argv, *stop, "--alive", str(Path(tmp) / f"worker{n}.alive")], cwd=ROOT,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for n in range(workers)]  # fmt: skip
            sampler.start()
            try:
                last = None
                while any(p.poll() is None for p in procs) and time.monotonic() - t_start < worker_timeout_s + 30:
                    time.sleep(0.5)
                    if sampler.samples and sampler.samples[-1] is not last:
                        last = sampler.samples[-1]
                        progress(f"lag {last[1]:,} of {sampler.total:,}")
                outputs = [p.communicate(timeout=30) for p in procs]
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait(timeout=10)
                sampler.close()
            for p, (_, err) in zip(procs, outputs, strict=True):
                if p.returncode != 0:
                    raise RuntimeError(f"a worker failed (exit {p.returncode}):\n{err[-3000:]}")
            summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
            summary = _combine(summaries)
            last_commit = max(s["last_commit_unix"] for s in summaries if s["last_commit_unix"] is not None)
            first_consume = _first_write(db)
            e2e_s = last_commit - first_consume
            check = verify(db, work)
        finally:
            down(root)
    lag = [(round(t - first_consume, 2), v) for t, v in sampler.samples]
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "crc32c": _has_crc32c()},
        "events": work.events,
        "impressions": len(work.impressions),
        "outcomes": len(work.outcomes),
        "outcome_types": dict(Counter(o.type for o in work.outcomes)),
        "organic_outcomes": work.organic,
        "produce_s": round(produce_s, 3),
        "produce_events_per_s": round(work.events / produce_s, 1),
        "batch_size": batch_size,
        "partitions": partitions,
        "workers": workers,
        "worker_start_to_first_consume_s": round(first_consume - t_start_wall, 2),
        "e2e_s": round(e2e_s, 3),
        "e2e_events_per_s": round(work.events / e2e_s, 1) if e2e_s > 0 else None,
        "worker": summary,
        "lag_samples": lag,  # (seconds since the first consumed batch, lag); negative times: joining the group
        "verification": check,
    }


def _combine(summaries: list[dict]) -> dict:
    """The workers' summaries as one: counts added, the longest run's seconds."""
    counts = ("messages", "batches", "impressions", "outcomes", "duplicates", "dead_letters", "credited", "closed",
              "db_retries")  # fmt: skip
    total = {k: sum(s[k] for s in summaries) for k in counts}
    total["seconds"] = max(s["seconds"] for s in summaries)
    total["events_per_s"] = round(total["messages"] / total["seconds"], 1) if total["seconds"] else 0.0
    total["workers"] = len(summaries)
    return total


def _first_write(database_url: str) -> float:
    """When the first batch's transaction began (``received_at`` defaults to ``now()``), as a Unix time."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            ts = conn.scalar(text("SELECT least((SELECT min(received_at) FROM impressions), "
                                  "(SELECT min(received_at) FROM outcomes))"))  # fmt: skip
    finally:
        engine.dispose()
    if ts is None:
        raise RuntimeError("the worker stored nothing")
    return ts.timestamp()


def _has_crc32c() -> bool:
    try:
        import crc32c  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- output


def table(result: dict) -> str:
    r, w = result, result["worker"]
    lines = [
        f"ingest benchmark: {r['machine']['cpus']} cores, Python {r['machine']['python']}, "
        f"crc32c {'installed' if r['machine']['crc32c'] else 'absent (pure-Python CRC)'}",
        "",
        f"  {'events produced':<38}{r['events']:>12,}  ({r['impressions']:,} impressions, {r['outcomes']:,} outcomes)",
        f"  {'outcome types':<38}{'':>12}  " + ", ".join(f"{k} {v:,}" for k, v in sorted(r["outcome_types"].items())),
        f"  {'produce rate (acks=all), events/s':<38}{r['produce_events_per_s']:>12,.0f}  ({r['produce_s']:.2f} s)",
        f"  {'end-to-end into reward groups, ev/s':<38}{r['e2e_events_per_s']:>12,.0f}  "
        f"({r['e2e_s']:.2f} s, first consume -> last commit)",
        f"  {'worker total incl. start/join, ev/s':<38}{w['events_per_s']:>12,.0f}  "
        f"({w['seconds']:.2f} s, {w['batches']} batches of <= {r['batch_size']}, {r['workers']} worker(s)"
        + (", 3 s idle exit included)" if r["workers"] > 1 else ")"),
        f"  {'worker start -> first consume, s':<38}{r['worker_start_to_first_consume_s']:>12.2f}",
        "",
        "  consumer lag (t = seconds since the first consumed batch):",
    ]
    samples = r["lag_samples"]
    # While the worker starts and joins the group the lag stays put: show only the last of such a run.
    samples = [x for k, x in enumerate(samples) if k + 1 == len(samples) or samples[k + 1][1] != x[1]]
    stride = max(1, len(samples) // 25)
    shown = samples[::stride] + ([samples[-1]] if samples and (len(samples) - 1) % stride else [])
    for t, lag in shown:
        lines.append(f"    t={t:>7.2f} s   lag {lag:>10,}" if lag >= 0 else f"    t={t:>7.2f} s   lag (no answer)")
    lines += ["", "  verification (count queries vs produced / pure attribution rules):"]
    for k, c in r["verification"]["checks"].items():
        lines.append(f"    {k:<30}{c['expected']!s:>14}{c['found']!s:>14}   {'ok' if c['ok'] else 'MISMATCH'}")
    lines.append("")
    lines.append(f"  result: {'PASS: zero lost, zero double-counted' if r['verification']['ok'] else 'FAIL'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="events to produce, at least (default 20000)")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "amazon18-industrial",
                        help="data set folder with valid.csv (and items.json for the catalog)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=2000, help="messages per transaction (default 2000)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic")
    parser.add_argument("--workers", type=int, default=1, help="ingestion worker processes in one consumer group")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic sessions")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds the worker may run at most")
    parser.add_argument("--json", type=Path, default=None, help="also write the full result as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be >= 1")
    if not 1 <= args.workers <= args.partitions:
        parser.error("--workers must be between 1 and --partitions")
    result = bench(args.events, args.data, args.seed, args.batch_size, args.partitions, args.timeout, quiet=args.quiet,
                   workers=args.workers)  # fmt: skip
    print(table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")
    if not result["verification"]["ok"]:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
