"""Serving load benchmark: the API under a real HTTP load generator, one engine configuration at a time.

It starts a Kafka broker (the embedded Tansu) for the run. For every configuration, with the same
load, it starts the service as it runs in production (``python -m ops.cli serve`` as a subprocess on
127.0.0.1, a free port, a fresh random API key, impressions published to that broker), waits for
``/readyz``, runs the load generator (``python -m ops.bench.loadgen``, a separate process: closed loop,
``--concurrency`` keep-alive connections, ``--duration`` seconds after a warm-up) against
``POST /v1/recommend`` at k=10 once per concurrency level, and stops the server (SIGTERM, then
SIGKILL).

Configurations (``--configs`` picks a subset; the first is the baseline the ratios refer to):

- ``generate``: the naive baseline, one ``transformers.generate`` per request, no micro-batching;
- ``torch-b1``: the torch engine without micro-batching (RECAST_BATCH_MAX_SIZE=1);
- ``torch-batched``: the torch engine micro-batched (``--batch-max-size``, ``--batch-max-wait-ms``);
- ``vllm``: the vLLM engine, micro-batched like torch-batched; only where vLLM is installed.

The table shows requests/s, latency p50/p95/p99, errors, the throughput ratio to the baseline at the
same concurrency, the server's and load generator's CPU per request (the machine may have 2 cores:
the load generator's share is CPU the server did not get), and the impressions the server had
published to Kafka. The goal the issue sets: micro-batched torch >= 10x the naive baseline's
requests/s at an equal or better p99.

Then, unless ``--swaps 0``: a hot-swap under load. The micro-batched torch server takes the load
while the admin route swaps in ``--swaps`` other checkpoints (copies of ``--checkpoint`` with
perturbed weights, so each is a new version), one after another; it reports every failed request
(the goal: none), each swap's time, and the versions that answered.

    python -m ops.bench.serve --checkpoint runs/demo/sft
    python -m ops.bench.serve --checkpoint runs/demo/sft --duration 10 --concurrency 16,64 --json out.json

Server logs stay in a temporary folder (printed); when a server does not become ready the tail of
its log is printed and the run goes on with the next configuration.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ops.bench.calibrate import cpu_calibration
from ops.bench.variants import perturbed_copy
from ops.stack.servers import HOST, create_topics, free_port, port_open, start_kafka, stop_pid, wait_until

ROOT = Path(__file__).resolve().parents[2]
CONFIG_NAMES = ("generate", "torch-b1", "torch-batched", "vllm")
GOAL_RATIO = 10.0
TOPICS = ("bench.impressions", "bench.outcomes")


@dataclass(frozen=True)
class ServeConfig:
    name: str
    engine: str
    batch_max_size: int
    batch_max_wait_ms: float


def configs(args: argparse.Namespace) -> list[ServeConfig]:
    """The configurations asked for, in the order of CONFIG_NAMES (the baseline first)."""
    table = {
        "generate": ServeConfig("generate", "generate", 1, 0.0),
        "torch-b1": ServeConfig("torch-b1", "torch", 1, 0.0),
        "torch-batched": ServeConfig("torch-batched", "torch", args.batch_max_size, args.batch_max_wait_ms),
        "vllm": ServeConfig("vllm", "vllm", args.batch_max_size, args.batch_max_wait_ms),
    }
    return [table[name] for name in CONFIG_NAMES if name in args.configs]


def vllm_available() -> bool:
    """``import vllm`` works in this interpreter (tried in a child process: importing it here costs seconds
    and memory the servers should have)."""
    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        return subprocess.run([sys.executable, "-c", "import vllm"], capture_output=True, timeout=300).returncode == 0
    except subprocess.TimeoutExpired:
        return False


# ---------------------------------------------------------------- one server


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    key: str
    admin: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def start_server(config: ServeConfig, checkpoint: Path, args: argparse.Namespace, bootstrap: str, work: Path,
                 tag: str) -> Server:  # fmt: skip
    key, admin = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RECAST_ENGINE": config.engine,
        "RECAST_BATCH_MAX_SIZE": str(config.batch_max_size),
        "RECAST_BATCH_MAX_WAIT_MS": str(config.batch_max_wait_ms),
        "RECAST_API_KEYS": hashlib.sha256(key.encode()).hexdigest(),
        "RECAST_ADMIN_TOKEN_SHA256": hashlib.sha256(admin.encode()).hexdigest(),
        "RECAST_DATA_DIR": str(args.data.resolve()),
        "RECAST_SPOOL_DIR": str(work / f"{tag}-spool"),
        "RECAST_KAFKA_BOOTSTRAP": bootstrap,
        "RECAST_IMPRESSIONS_TOPIC": TOPICS[0],
        "RECAST_OUTCOMES_TOPIC": TOPICS[1],
        "RECAST_REGISTRY_POLL_S": "0",  # serve the given checkpoint (and the admin swaps) only; no database
        "RECAST_CATALOG_VERSIONS": "false",  # the data set's catalog as it is (no database to read retirements from)
    }
    if args.beam_cache is not None:
        env["RECAST_BEAM_CACHE_ENTRIES"] = str(args.beam_cache)
    port, log = free_port(), work / f"{tag}.log"
    argv = [sys.executable, "-m", "ops.cli", "serve", "--checkpoint", str(checkpoint), "--engine", config.engine,
            "--host", HOST, "--port", str(port), "--log-level", "warning"]  # fmt: skip
    with log.open("wb") as out:  # the child keeps its own descriptor; ours can close
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server(proc, port, key, admin, log)


def http(url: str, body: dict | None = None, token: str | None = None, timeout: float = 120) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:  # 503 while the model loads; 409 for a refused swap
        return exc.code, exc.read()
    except OSError:  # not listening yet
        return 0, b""


def wait_ready(server: Server, timeout: float) -> float:
    """Seconds until /readyz answered 200 (model loaded and Kafka reachable); RuntimeError if it never does."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.proc.returncode} before it was ready")
        if http(f"{server.url}/readyz", timeout=2)[0] == 200:
            return time.monotonic() - start
        time.sleep(0.25)
    raise RuntimeError(f"/readyz did not answer 200 within {timeout:.0f} s: {http(f'{server.url}/readyz')[1]!r}")


def stop_server(server: Server, grace: float = 20.0) -> int:
    """SIGTERM (uvicorn drains and runs the lifespan's shutdown), SIGKILL if it has not exited in time."""
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


METRICS = (
    ('recast_publisher_records_total{outcome="published"}', "published"),
    ('recast_publisher_records_total{outcome="spooled"}', "spooled"),
    ("recast_impressions_total", "impressions"),
    ("recast_spool_pending", "pending"),
)
CACHE_METRICS = (('recast_beam_cache_prompts_total{result="hit"}', "hits"),
                 ('recast_beam_cache_prompts_total{result="miss"}', "misses"))  # fmt: skip


def published(server: Server) -> dict:
    """The publisher's counters from /metrics: impressions acknowledged by Kafka, spooled, pending."""
    return scrape(server, METRICS)


def scrape(server: Server, metrics: tuple[tuple[str, str], ...]) -> dict:
    """``metrics``' values on the server's /metrics, by their keys (those it does not show are left out)."""
    _, text = http(f"{server.url}/metrics")
    found = {}
    for line in text.decode(errors="replace").splitlines():
        for name, key in metrics:
            if line.startswith(name + " "):
                found[key] = int(float(line.split()[-1]))
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def log_tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------- one configuration


def run_loadgen(server: Server, concurrency: int, args: argparse.Namespace, out: Path) -> dict:
    argv = [sys.executable, "-m", "ops.bench.loadgen", "--url", f"{server.url}/v1/recommend", "--key", server.key,
            "--data", str(args.data), "--k", str(args.k), "--concurrency", str(concurrency),
            "--duration", str(args.duration), "--warmup", str(args.warmup), "--json", str(out)]  # fmt: skip
    limit = args.warmup + args.duration + 120  # in-flight requests may take their 30 s timeout
    done = subprocess.run(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=limit)  # fmt: skip
    if not out.exists():
        raise RuntimeError(f"the load generator wrote no result (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(out.read_text())


def bench_config(config: ServeConfig, args: argparse.Namespace, bootstrap: str, work: Path) -> list[dict]:
    """One server, the load at every concurrency level: one cell per level."""
    base = {"config": config.name, "engine": config.engine, "batch_max_size": config.batch_max_size,
            "batch_max_wait_ms": config.batch_max_wait_ms}  # fmt: skip
    server = start_server(config, args.checkpoint, args, bootstrap, work, config.name)
    cells = []
    try:
        ready_s = round(wait_ready(server, args.ready_timeout), 2)
        for concurrency in args.concurrency:
            cell = {**base, "concurrency": concurrency, "ready_s": ready_s, "log": str(server.log)}
            cpu0, cache0 = cpu_seconds(server.proc.pid), scrape(server, CACHE_METRICS)
            cell["load"] = run_loadgen(server, concurrency, args, work / f"{config.name}-c{concurrency}.json")
            cpu1, cache1 = cpu_seconds(server.proc.pid), scrape(server, CACHE_METRICS)
            prompts = {key: cache1.get(key, 0) - cache0.get(key, 0) for _, key in CACHE_METRICS}
            if sum(prompts.values()):  # the prompts decoded during the load (warm-up included) and answered from memory
                cell["cache_hit_rate"] = round(prompts["hits"] / sum(prompts.values()), 4)
            answered = cell["load"]["answered"]
            if cpu0 is not None and cpu1 is not None and answered:
                cell["server_cpu_ms_per_request"] = round(1000 * (cpu1 - cpu0) / answered, 2)
            cells.append(cell)
        time.sleep(1.0)  # the publisher acknowledges in batches: let the last one land
        for cell in cells:
            cell["impressions"] = published(server)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
        cells.append({**base, "concurrency": None, "error": str(exc), "log": str(server.log),
                      "log_tail": log_tail(server.log)})  # fmt: skip
    finally:
        stop_server(server)
    return cells


# ---------------------------------------------------------------- hot-swap under load


def swap_under_load(args: argparse.Namespace, bootstrap: str, work: Path) -> dict:
    """The micro-batched torch server under load while ``args.swaps`` checkpoints are swapped in."""
    config = ServeConfig("torch-batched", "torch", args.batch_max_size, args.batch_max_wait_ms)
    paths = [
        perturbed_copy(args.checkpoint, work / f"swap-{i + 1}", args.data, seed=1000 + i) for i in range(args.swaps)
    ]
    server = start_server(config, args.checkpoint, args, bootstrap, work, "swap")
    result: dict = {"swaps": [], "concurrency": args.concurrency[0], "log": str(server.log)}
    try:
        wait_ready(server, args.ready_timeout)
        swaps: list[dict] = []

        def swapper() -> None:
            gap = args.duration / (args.swaps + 1)
            time.sleep(args.warmup + gap)
            for path in paths:
                t0 = time.monotonic()
                status, body = http(f"{server.url}/v1/admin/model", {"path": str(path)}, token=server.admin)
                answer = json.loads(body or b"{}")
                swaps.append({"path": path.name, "status": status, "wall_s": round(time.monotonic() - t0, 3),
                              "load_s": round((answer.get("last_swap") or {}).get("seconds") or 0.0, 3),
                              "version": answer.get("version")})  # fmt: skip
                time.sleep(gap)

        thread = threading.Thread(target=swapper, daemon=True)
        thread.start()
        result["load"] = run_loadgen(server, args.concurrency[0], args, work / "swap-load.json")
        thread.join(timeout=120)
        result["swaps"] = swaps
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
        result["error"] = str(exc)
        result["log_tail"] = log_tail(server.log)
    finally:
        stop_server(server)
    return result


# ---------------------------------------------------------------- the report


def compare(cells: list[dict]) -> dict:
    """Throughput ratios to the baseline (the first configuration that ran) at each concurrency, and the goal."""
    goal = {}
    for concurrency in sorted({c["concurrency"] for c in cells if c.get("concurrency")}):
        ok = [c for c in cells if c.get("concurrency") == concurrency and c["load"]["requests_per_s"] > 0]
        if not ok:
            continue
        base = ok[0]
        for c in ok:
            c["ratio"] = round(c["load"]["requests_per_s"] / base["load"]["requests_per_s"], 2)
        batched = next((c for c in ok if c["config"] == "torch-batched"), None)
        if base["config"] == "generate" and batched is not None:
            p99, base_p99 = batched["load"]["latency_ms"]["p99"], base["load"]["latency_ms"]["p99"]
            goal[concurrency] = bool(batched["ratio"] >= GOAL_RATIO and p99 <= base_p99)
    return {"goal_met_at_concurrency": goal}


def table(result: dict) -> str:
    m, a = result["machine"], result["load"]
    lines = [
        f"serving benchmark: {m['cpus']} CPUs, Python {m['python']}, torch {m['torch']}, {m['platform']}",
        f"checkpoint {result['checkpoint']}; load: k={a['k']}, {a['duration_s']:g} s measured after "
        f"{a['warmup_s']:g} s warm-up, closed loop; impressions published to a local Kafka (Tansu)",
        *_calibration_lines(result.get("calibration")),
        "",
        f"  {'config':<15}{'batch':>6}{'conc':>6}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>7}"
        f"{'vs base':>9}{'srv CPU':>9}{'gen CPU':>9}{'cached':>8}",
    ]
    for c in result["cells"]:
        if "skipped" in c:
            lines.append(f"  {c['config']}: {c['skipped']}")
            continue
        if "load" not in c:
            lines.append(f"  {c['config']:<15}{c['batch_max_size']:>6}  FAILED: {c['error']}")
            continue
        r, lat = c["load"], c["load"]["latency_ms"]
        errors = r["requests"] - r["answered"] + sum(v for k, v in r["errors"].items() if k.startswith("status"))
        ratio = f"{c['ratio']:.2f}x" if "ratio" in c else "-"
        srv = f"{c['server_cpu_ms_per_request']:.1f}" if "server_cpu_ms_per_request" in c else "-"
        cached = f"{c['cache_hit_rate']:.0%}" if "cache_hit_rate" in c else "-"
        lines.append(
            f"  {c['config']:<15}{c['batch_max_size']:>6}{c['concurrency']:>6}{r['requests_per_s']:>9.1f}"
            f"{lat['p50']:>9.1f}{lat['p95']:>9.1f}{lat['p99']:>9.1f}{errors:>7}{ratio:>9}{srv:>9}"
            f"{r['client_cpu_ms_per_request']:>9.2f}{cached:>8}"
        )
    lines += ["", "  batch: RECAST_BATCH_MAX_SIZE; conc: load generator connections; vs base: req/s / generate's at",
              "  the same concurrency; srv/gen CPU: server / load generator CPU ms per request; cached: prompts",
              "  answered from the engine's cache of beams during the load, warm-up included (-: none)"]  # fmt: skip
    shown = set()
    for c in result["cells"]:
        if "impressions" in c and c["config"] not in shown:
            shown.add(c["config"])
            i = c["impressions"]
            lines.append(f"  {c['config']}: {i.get('impressions', 0):,} lists served and handed to the publisher, "
                         f"{i.get('published', 0):,} acknowledged by Kafka, "
                         f"{i.get('spooled', 0):,} spooled")  # fmt: skip
    for concurrency, met in result["summary"]["goal_met_at_concurrency"].items():
        lines.append(f"  goal (torch-batched >= {GOAL_RATIO:g}x generate's req/s at equal or better p99), "
                     f"concurrency {concurrency}: {'MET' if met else 'NOT MET'}")  # fmt: skip
    swap = result.get("swap")
    if swap:
        lines += ["", f"  hot-swap under load (torch-batched, concurrency {swap['concurrency']}):"]
        if "load" in swap:
            r = swap["load"]
            failed = r["requests"] - r["answered"] + sum(v for k, v in r["errors"].items() if k.startswith("status"))
            lines.append(f"    {r['requests']:,} requests, {failed} failed, {r['requests_per_s']:.1f} req/s, "
                         f"p99 {r['latency_ms']['p99']:.1f} ms")  # fmt: skip
        for s in swap["swaps"]:
            lines.append(f"    swap to {s['path']}: HTTP {s['status']}, version {s['version']}, "
                         f"load+verify+warm {s['load_s']} s (admin call {s['wall_s']} s)")  # fmt: skip
        if "error" in swap:
            lines += [f"    FAILED: {swap['error']}", swap.get("log_tail", "")]
    for c in result["cells"]:
        if "log_tail" in c:
            lines += ["", f"--- {c['config']}: last lines of {c['log']}", c["log_tail"]]
    return "\n".join(lines)


def _calibration_lines(calibration: dict | None) -> list[str]:
    if not calibration:
        return []
    parts = [f"{when}: matmul {c['matmul_ms']} ms, python {c['python_ms']} ms" for when, c in calibration.items()]
    return [f"CPU calibration (ops.bench.calibrate; lower is faster) {'; '.join(parts)}"]


def machine() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "absent"
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch_version,
            "platform": platform.platform(terse=True)}  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory to serve")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "amazon18-industrial",
                        help="data set folder: the service's catalog and the load's histories (valid.csv)")  # fmt: skip
    parser.add_argument("--configs", default=",".join(CONFIG_NAMES),
                        help=f"comma-separated subset of {', '.join(CONFIG_NAMES)} (default: all)")  # fmt: skip
    parser.add_argument(
        "--concurrency",
        default="16",
        help="load generator connections; several levels comma-separated, e.g. 16,64 (default 16)",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per level (default 20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first (default 3)")
    parser.add_argument("--k", type=int, default=10, help="items per request (default 10)")
    parser.add_argument("--batch-max-size", type=int, default=32, help="micro-batch size of torch-batched/vllm")
    parser.add_argument("--batch-max-wait-ms", type=float, default=2.0, help="micro-batch wait of torch-batched/vllm")
    parser.add_argument("--beam-cache", type=int, default=None, metavar="ENTRIES",
                        help="the servers' cache of beams (RECAST_BEAM_CACHE_ENTRIES; 0: none; default: the "
                        "settings' default)")  # fmt: skip
    parser.add_argument("--swaps", type=int, default=3, help="checkpoints swapped in under load (0: skip; default 3)")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="seconds a server may take to be ready")
    parser.add_argument("--json", type=Path, default=None, help="also write the full result as JSON here")
    args = parser.parse_args(argv)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(args.configs) - set(CONFIG_NAMES))
    if unknown or not args.configs:
        parser.error(f"--configs: unknown {unknown}; choose from {', '.join(CONFIG_NAMES)}")
    try:
        args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--concurrency: comma-separated integers, got {args.concurrency!r}")
    if not args.concurrency or min(args.concurrency) < 1:
        parser.error("--concurrency: at least one level, each >= 1")
    if args.swaps < 0:
        parser.error("--swaps must be >= 0")
    if args.beam_cache is not None and args.beam_cache < 0:
        parser.error("--beam-cache must be >= 0")
    if not (args.checkpoint / "manifest.json").is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no manifest.json (train one with `recast train`)")
    if not (args.data / "valid.csv").is_file():
        parser.error(f"--data {args.data}: no valid.csv")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.checkpoint = args.checkpoint.resolve()
    work = Path(tempfile.mkdtemp(prefix="recast-bench-serve-"))
    calibration = {"before": cpu_calibration()}
    (work / "kafka").mkdir()
    broker = start_kafka(work / "kafka")
    try:
        wait_until(lambda: port_open(broker.port), f"kafka (log {broker.log})")
        create_topics(broker.url, list(TOPICS), 4)
        cells = []
        for config in configs(args):
            if config.engine == "vllm" and not vllm_available():
                cells.append({"config": config.name, "skipped": "vllm: not installed in this environment"})
                continue
            print(f"[{time.strftime('%H:%M:%S')}] {config.name}: starting the server", file=sys.stderr, flush=True)
            cells += bench_config(config, args, broker.url, work)
        swap = None
        if args.swaps:
            print(f"[{time.strftime('%H:%M:%S')}] hot-swap under load", file=sys.stderr, flush=True)
            swap = swap_under_load(args, broker.url, work)
    finally:
        stop_pid(broker.pid)
    calibration["after"] = cpu_calibration()
    result = {
        "machine": machine(),
        "calibration": calibration,
        "checkpoint": str(args.checkpoint),
        "logs": str(work),
        "load": {"k": args.k, "concurrency": args.concurrency, "duration_s": args.duration, "warmup_s": args.warmup},
        "cells": cells,
        "swap": swap,
    }
    result["summary"] = compare(cells)
    print(table(result))
    print(f"\nserver logs: {work}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
