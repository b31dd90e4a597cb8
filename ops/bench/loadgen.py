"""A closed-loop HTTP load generator for ``POST /v1/recommend``, run as its own process.

``--concurrency`` clients on one asyncio loop, each on its own keep-alive HTTP/1.1 connection, send
the next request as soon as the previous one answered (closed loop: the offered load adapts to the
server, so requests/s is the server's throughput at that concurrency). Request bodies are
``{"user_id", "history", "k"}`` built from the data set's ``valid.csv`` (the last 10 history item
ids as strings), cycled, and encoded once before the run.

The client is a minimal HTTP/1.1 implementation on asyncio streams (a status line, headers,
a Content-Length or chunked body; nothing else): on a 2-core machine the load generator shares the
CPU with the server, so every millisecond it spends per request is stolen from the measurement. Its
own CPU time per request (``time.process_time`` over the run / requests) is reported so that the
cost stays visible. Only 127.0.0.1 / localhost is accepted as a target: servers and load
generators stay on this machine.

It stops by itself: after ``--duration`` seconds (plus ``--warmup``), after ``--max-requests``
requests, or when more than ``--max-errors`` requests failed without an HTTP answer (refused or
reset connections, timeouts). Requests answered during the warm-up are not measured; requests/s
counts the 200 answers in the measured window; latency percentiles are over those answers.

    python -m ops.bench.loadgen --url http://127.0.0.1:8000/v1/recommend --key KEY --concurrency 16 --duration 20
    python -m ops.bench.loadgen --url http://127.0.0.1:8000/v1/recommend --key KEY --max-requests 200 --json out.json

Exit status: 0 when at least one request succeeded and the error budget held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import csv
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

LOCAL_HOSTS = ("127.0.0.1", "localhost")
HISTORY_LEN = 10


@dataclass
class Target:
    host: str
    port: int
    path: str


@dataclass
class Run:
    """Shared state of one run: what every client records, and when to stop."""

    deadline: float  # perf_counter time after which no request is sent
    warm_end: float  # requests sent before this are not measured
    max_requests: int | None
    max_errors: int
    honour_retry_after: bool = False  # a client told to come back later waits that long (at most 5 s)
    rate: float | None = None  # open loop: request n is due at start + n / rate (None: closed loop)
    start: float = 0.0
    sent: int = 0
    failures: int = 0  # requests with no HTTP answer (connection errors, timeouts)
    stopped_by: str = "duration"
    records: list[tuple[float, float, int]] = field(default_factory=list)  # (sent, answered, status)
    errors: Counter = field(default_factory=Counter)  # "status 503" / exception name -> count
    sample: bytes | None = None  # the first 200 body, to check the answer's shape once

    def next_request(self) -> int | None:
        """The index of the next request to send, or None when the run is over."""
        if self.stopped_by != "duration" or time.perf_counter() >= self.deadline:
            return None
        if self.max_requests is not None and self.sent >= self.max_requests:
            self.stopped_by = "max_requests"
            return None
        self.sent += 1
        return self.sent - 1


# ---------------------------------------------------------------- requests


def parse_target(url: str) -> Target:
    """http://127.0.0.1:PORT/path only: anything else is refused with the reason."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise SystemExit(f"--url {url}: only plain http:// is supported")
    if parts.hostname not in LOCAL_HOSTS:
        raise SystemExit(f"--url {url}: host {parts.hostname!r} refused; the load generator only targets 127.0.0.1")
    return Target(parts.hostname, parts.port or 80, parts.path or "/")


def load_bodies(data: Path, k: int) -> list[bytes]:
    """One JSON body per row of ``valid.csv``: the user and the last 10 items of their history."""
    with (data / "valid.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"no rows in {data / 'valid.csv'}")
    bodies = []
    for row in rows:
        history = [str(i) for i in ast.literal_eval(row["history_item_id"])][-HISTORY_LEN:]
        bodies.append(json.dumps({"user_id": row["user_id"], "history": history, "k": k}).encode())
    return bodies


def encode_requests(target: Target, key: str, bodies: list[bytes]) -> list[bytes]:
    """Complete request bytes, built once: the clients only write them."""
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\nAccept: application/json\r\n"
    )
    return [f"{head}Content-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies]


# ---------------------------------------------------------------- the client


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: (status, body, whether the server keeps the connection open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise ConnectionError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    status = int(rest[:3])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
    read_response.retry_after = headers.get("retry-after")  # the last answer's, for clients that honour it
    return status, body, keep


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # the (empty) trailer section
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def client(target: Target, requests: list[bytes], run: Run, timeout: float) -> None:
    """Send requests one after another on one keep-alive connection; reconnect after a failure."""
    reader = writer = None
    while (n := run.next_request()) is not None:
        due = None
        if run.rate is not None:  # open loop: wait for the request's slot, and time it from the slot
            due = run.start + n / run.rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(target.host, target.port), timeout)
            # From the slot, not from when a free client got to it: a late send counts as latency
            # (no coordinated omission).
            t0 = min(due, time.perf_counter()) if due is not None else time.perf_counter()
            writer.write(requests[n % len(requests)])
            status, body, keep = await asyncio.wait_for(read_response(reader), timeout)
            run.records.append((t0, time.perf_counter(), status))
            if status != 200:
                run.errors[f"status {status}"] += 1
                retry = read_response.retry_after
                if run.honour_retry_after and status in (429, 503) and retry and retry.isdigit():
                    await asyncio.sleep(min(float(retry), 5.0))  # as a well-behaved client would
            elif run.sample is None:
                run.sample = body
            if not keep:
                writer = await close(writer)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            run.records.append((time.perf_counter(), time.perf_counter(), 0))  # status 0: no HTTP answer
            run.errors[type(exc).__name__] += 1
            run.failures += 1
            writer = await close(writer)
            if run.failures > run.max_errors:
                run.stopped_by = "error_budget"
            await asyncio.sleep(0.05)  # a refused connection fails at once; do not spin on it
    await close(writer)


async def close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass  # reset by the peer: closed either way
    return None


# ---------------------------------------------------------------- the run and its report


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def summarise(run: Run, start: float, finished: float, cpu_s: float, args: argparse.Namespace) -> dict:
    # The window ends at the deadline, or when the clients stopped if that was earlier (max requests, errors).
    end = min(run.deadline, finished)
    measured = [(t0, t1, s) for t0, t1, s in run.records if t0 >= run.warm_end and t1 <= end]
    ok = sorted(1000 * (t1 - t0) for t0, t1, s in measured if s == 200)
    window = max(end - run.warm_end, 1e-9)
    answered = sum(1 for r in run.records if r[2] != 0)
    statuses = Counter(s for _, _, s in measured)
    sample_items = None
    if run.sample is not None:
        try:
            sample_items = len(json.loads(run.sample)["items"])
        except (ValueError, KeyError, TypeError):
            sample_items = -1  # a 200 that is not the documented shape
    return {
        "url": args.url,
        "k": args.k,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "rate": args.rate,
        "warmup_s": args.warmup,
        "stopped_by": run.stopped_by,
        "requests": answered + run.failures,
        "answered": answered,
        "measured_ok": len(ok),
        "errors": dict(run.errors),
        "window_s": round(window, 3),
        "requests_per_s": round(len(ok) / window, 2),
        "offered_per_s": round(len(measured) / window, 2),  # everything sent in the window, whatever came back
        "status_shares": {str(k): round(v / max(len(measured), 1), 4) for k, v in sorted(statuses.items())},
        "latency_ms": {
            "p50": round(percentile(ok, 50), 2),
            "p95": round(percentile(ok, 95), 2),
            "p99": round(percentile(ok, 99), 2),
            "max": round(ok[-1], 2) if ok else math.nan,
        },
        "items_in_first_answer": sample_items,
        "client_cpu_s": round(cpu_s, 3),
        "client_cpu_ms_per_request": round(1000 * cpu_s / max(answered + run.failures, 1), 3),
        "wall_s": round(time.perf_counter() - start, 3),
        "pid": os.getpid(),
    }


async def drive(target: Target, requests: list[bytes], args: argparse.Namespace) -> dict:
    start, cpu0 = time.perf_counter(), time.process_time()
    run = Run(
        deadline=start + args.warmup + args.duration,
        warm_end=start + args.warmup,
        max_requests=args.max_requests,
        max_errors=args.max_errors,
        rate=args.rate,
        start=start,
        honour_retry_after=args.honour_retry_after,
    )
    await asyncio.gather(*(client(target, requests, run, args.timeout) for _ in range(args.concurrency)))
    return summarise(run, start, time.perf_counter(), time.process_time() - cpu0, args)


def table(r: dict) -> str:
    lat = r["latency_ms"]
    errors = ", ".join(f"{k} x{v}" for k, v in sorted(r["errors"].items())) or "none"
    return "\n".join(
        [
            f"loadgen: {r['url']}  k={r['k']}  concurrency {r['concurrency']}  stopped by {r['stopped_by']}",
            f"  {'requests sent / answered':<28}{r['requests']:>10} / {r['answered']}",
            f"  {'measured 200s (after warmup)':<28}{r['measured_ok']:>10}  in {r['window_s']:.2f} s",
            f"  {'requests/s':<28}{r['requests_per_s']:>10.2f}",
            f"  {'latency ms p50/p95/p99/max':<28}{lat['p50']:>10.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} / "
            f"{lat['max']:.1f}",
            f"  {'errors':<28}{errors:>10}",
            f"  {'client CPU ms/request':<28}{r['client_cpu_ms_per_request']:>10.3f}  "
            f"({r['client_cpu_s']:.2f} s in all)",
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT/v1/recommend (local hosts only)")
    parser.add_argument("--key", required=True, help="the storefront API key, sent as 'Authorization: Bearer KEY'")
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"), help="folder with valid.csv")
    parser.add_argument("--k", type=int, default=10, help="items asked for per request (default 10)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients/connections (default 16)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds after the warm-up (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds answered but not measured (default 2)")
    parser.add_argument("--max-requests", type=int, default=None, help="stop after sending this many requests")
    parser.add_argument("--max-errors", type=int, default=50, help="stop after this many failed connections/timeouts")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one request may take (default 30)")
    parser.add_argument("--rate", type=float, default=None,
                        help="open loop: send this many requests per second whatever the answers take (needs "
                        "--concurrency >= rate x latency); default: closed loop")  # fmt: skip
    parser.add_argument("--honour-retry-after", action="store_true",
                        help="after a 429 or 503 with Retry-After, a client waits that long (at most 5 s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    for name in ("k", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.duration <= 0 or args.warmup < 0 or args.timeout <= 0:
        parser.error("--duration and --timeout must be > 0, --warmup >= 0")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be > 0")
    if args.max_requests is not None and args.max_requests < 1:
        parser.error("--max-requests must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    target = parse_target(args.url)
    requests = encode_requests(target, args.key, load_bodies(args.data, args.k))
    result = asyncio.run(drive(target, requests, args))
    print(table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["measured_ok"] == 0 or result["stopped_by"] == "error_budget":
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
