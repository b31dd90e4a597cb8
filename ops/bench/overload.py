"""The API past its capacity: offered against served rate, the 503 and 429 shares, p99 of what was served, RSS.

One ``recast serve`` (torch engine, micro-batched, its decoder queue bounded at ``--queue-max``) on an
embedded stack, three loads from the load generator in turn:
1. *within capacity*: a closed loop of 8 connections (the baseline's p99);
2. *overload*: a closed loop of ``--overload`` connections, many times what the queue admits; the
   service must shed the excess with 503 + Retry-After and keep the p99 of what it serves near (1);
3. *rate-limited key*: a key limited to ``--key-rate`` requests/s driven open-loop at 3x that rate: the
   excess is 429.

    python -m ops.bench.overload --checkpoint runs/demo/sft --json runs/reliability/overload.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
from pathlib import Path

from ops.bench.harness import api_on_stack, calibrate, loadgen_args, metric, rss_mib


def _sample_rss(pid: int, stop: threading.Event, peak: list[float]) -> None:
    while not stop.wait(0.5):
        value = rss_mib(pid)
        if value is not None:
            peak[0] = max(peak[0], value)


def load(api, key: str, data: Path, duration: float, **overrides) -> dict:
    from ops.bench.loadgen import drive, encode_requests, load_bodies, parse_target

    args = loadgen_args(api.url, key, data, duration=duration, warmup=2.0, timeout=60.0, max_errors=10_000,
                        **overrides)  # fmt: skip
    target = parse_target(args.url)
    requests = encode_requests(target, key, load_bodies(data, args.k))
    stop, peak = threading.Event(), [rss_mib(api.pid) or 0.0]
    sampler = threading.Thread(target=_sample_rss, args=(api.pid, stop, peak), daemon=True)
    sampler.start()
    try:
        result = asyncio.run(drive(target, requests, args))
    finally:
        stop.set()
        sampler.join()
    result["rss_peak_mib"] = round(peak[0], 1)
    return result


def row(name: str, r: dict) -> dict:
    shares = r["status_shares"]
    return {"load": name, "concurrency": r["concurrency"], "rate": r["rate"], "offered_per_s": r["offered_per_s"],
            "served_per_s": r["requests_per_s"], "share_503": shares.get("503", 0.0),
            "share_429": shares.get("429", 0.0), "share_5xx_other": round(sum(v for k, v in shares.items()
                                                                              if k.startswith("5") and k != "503"), 4),
            "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"], "rss_peak_mib": r["rss_peak_mib"],
            "no_answer": shares.get("0", 0.0)}  # fmt: skip


def table(rows: list[dict], calibration: float) -> str:
    head = ("| load | connections | offered req/s | served req/s | 503 share | 429 share | other 5xx | "
            "p50 ms | p99 ms | RSS peak MiB |")  # fmt: skip
    lines = [head, "| --- " * 10 + "|"]
    for r in rows:
        lines.append(f"| {r['load']} | {r['concurrency']} | {r['offered_per_s']:.1f} | {r['served_per_s']:.1f} | "
                     f"{r['share_503']:.1%} | {r['share_429']:.1%} | {r['share_5xx_other']:.1%} | {r['p50_ms']:.1f} | "
                     f"{r['p99_ms']:.1f} | {r['rss_peak_mib']:.0f} |")  # fmt: skip
    lines.append(f"CPU calibration (fixed loop, s): {calibration}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"))
    parser.add_argument("--queue-max", type=int, default=32, help="the API's RECAST_QUEUE_MAX for the run")
    parser.add_argument("--overload", type=int, default=256, help="connections of the overload")
    parser.add_argument("--key-rate", type=float, default=20.0, help="requests/s the limited key may send")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per load")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    env = {"RECAST_QUEUE_MAX": str(args.queue_max), "RECAST_RATE_LIMITS": f"limited={args.key_rate:g}/second",
           "RECAST_BATCH_MAX_SIZE": "32", "RECAST_BATCH_MAX_WAIT_MS": "2"}  # fmt: skip
    calibration = calibrate()
    with tempfile.TemporaryDirectory(prefix="recast-overload-") as tmp, \
            api_on_stack(Path(tmp), args.checkpoint, args.data, env, names=("load", "limited")) as api:  # fmt: skip
        rows = [
            row("within capacity", load(api, api.keys["load"], args.data, args.duration, concurrency=8)),
            row(f"overload ({args.overload} connections)", load(api, api.keys["load"], args.data, args.duration,
                                                                concurrency=args.overload)),  # fmt: skip
            row(f"overload ({args.overload} connections), clients honour Retry-After",
                load(api, api.keys["load"], args.data, args.duration, concurrency=args.overload,
                     honour_retry_after=True)),  # fmt: skip
            row(f"key limited to {args.key_rate:g}/s, sent {3 * args.key_rate:g}/s",
                load(api, api.keys["limited"], args.data, args.duration, concurrency=16, rate=3 * args.key_rate)),
        ]
        shed = metric(api.url, "recast_shed_total")
    result = {"rows": rows, "shed_total": shed, "queue_max": args.queue_max, "calibration_s": calibration,
              "after_calibration_s": calibrate()}  # fmt: skip
    print(table(rows, calibration))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
