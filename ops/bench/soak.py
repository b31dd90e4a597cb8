"""The soak: ``recast serve`` at a steady open-loop rate for 10 minutes; p99, error rate and RSS every minute.

Memory must stay flat: the API's RSS at the end may exceed its RSS after the first minute (caches warm,
allocator settled) by at most ``--rss-bound-mib`` (32 MiB by default, about 5% of the process). The run
fails (exit 1) if it grows more, or if any request fails.

    python -m ops.bench.soak --checkpoint runs/demo/sft --minutes 10 --rate 50 --json runs/reliability/soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import threading
from pathlib import Path

from ops.bench.harness import api_on_stack, calibrate, loadgen_args, rss_mib


def per_minute(records: list[tuple[float, float, int]], start: float, minutes: int, rss: dict[int, float]) -> list:
    rows = []
    for m in range(minutes):
        lo, hi = start + 60 * m, start + 60 * (m + 1)
        inside = [(t0, t1, s) for t0, t1, s in records if lo <= t0 < hi]
        ok = sorted(1000 * (t1 - t0) for t0, t1, s in inside if s == 200)
        p99 = ok[max(0, math.ceil(0.99 * len(ok)) - 1)] if ok else math.nan
        errors = sum(1 for *_, s in inside if s != 200)
        rows.append({"minute": m + 1, "requests": len(inside), "p99_ms": round(p99, 1),
                     "error_rate": round(errors / max(len(inside), 1), 5), "rss_mib": round(rss.get(m, math.nan), 1)})
    return rows


def run(api, key: str, data: Path, minutes: int, rate: float) -> tuple[list, float]:
    from ops.bench.loadgen import Run, client, encode_requests, load_bodies, parse_target

    args = loadgen_args(api.url, key, data, duration=60.0 * minutes, warmup=0.0, rate=rate, concurrency=64,
                        timeout=30.0, max_errors=10_000)  # fmt: skip
    target = parse_target(args.url)
    requests = encode_requests(target, key, load_bodies(data, args.k))
    rss: dict[int, float] = {}
    stop = threading.Event()

    async def go() -> Run:
        import time

        start = time.perf_counter()
        state = Run(deadline=start + args.duration, warm_end=start, max_requests=None, max_errors=args.max_errors,
                    rate=rate, start=start)  # fmt: skip

        def sample() -> None:  # the RSS at the end of every minute
            for m in range(minutes):
                if stop.wait(max(0.0, start + 60 * (m + 1) - time.perf_counter() - 0.5)):
                    return
                rss[m] = rss_mib(api.pid) or math.nan

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        await asyncio.gather(*(client(target, requests, state, args.timeout) for _ in range(args.concurrency)))
        stop.set()
        sampler.join()
        return state

    state = asyncio.run(go())
    return per_minute(state.records, state.start, minutes, rss), state.start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"))
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second, open loop")
    parser.add_argument("--rss-bound-mib", type=float, default=32.0, help="allowed RSS growth after minute 1")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    before = calibrate()
    with tempfile.TemporaryDirectory(prefix="recast-soak-") as tmp, \
            api_on_stack(Path(tmp), args.checkpoint, args.data, {}) as api:  # fmt: skip
        rows, _ = run(api, api.keys["load"], args.data, args.minutes, args.rate)
    growth = rows[-1]["rss_mib"] - rows[0]["rss_mib"]
    errors = sum(r["requests"] * r["error_rate"] for r in rows)
    ok = growth <= args.rss_bound_mib and errors == 0
    result = {"rate": args.rate, "minutes": args.minutes, "rows": rows, "rss_growth_mib": round(growth, 1),
              "rss_bound_mib": args.rss_bound_mib, "errors": round(errors), "ok": ok,
              "calibration_s": {"before": before, "after": calibrate()}}  # fmt: skip
    print("| minute | requests | p99 ms | error rate | RSS MiB |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['minute']} | {r['requests']} | {r['p99_ms']} | {r['error_rate']:.3%} | {r['rss_mib']} |")
    print(f"RSS growth after minute 1: {growth:+.1f} MiB (bound {args.rss_bound_mib:g}); errors {errors:.0f}; "
          f"CPU calibration {result['calibration_s']}; {'PASS' if ok else 'FAIL'}")  # fmt: skip
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not ok:
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
