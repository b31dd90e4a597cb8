"""Serving load benchmark: the API under a real HTTP load generator, one engine configuration at a time.

For every configuration, in one run and with the same load, it starts the service as it runs in
production (``python -m ops.cli serve`` as a subprocess on 127.0.0.1, a free port, a fresh random
API key, impressions spooled to a temporary folder because the Kafka address points at a closed
port), waits for ``/readyz``, runs the load generator (``python -m ops.loadgen``, a separate
process: closed loop, ``--concurrency`` keep-alive connections, ``--duration`` seconds after a
warm-up) against ``POST /v1/recommend`` at k=10, and stops the server (SIGTERM, then SIGKILL).

Configurations (``--configs`` picks a subset; the first is the baseline the ratios refer to):

- ``generate``: the naive baseline, one ``transformers.generate`` per request, no micro-batching;
- ``torch-b1``: the torch engine without micro-batching (RECAST_BATCH_MAX_SIZE=1);
- ``torch-batched``: the torch engine micro-batched (``--batch-max-size``, ``--batch-max-wait-ms``);
- ``vllm``: the vLLM engine, micro-batched like torch-batched; only where vLLM is installed.

The table shows requests/s, latency p50/p95/p99, errors, the throughput ratio to the baseline and
the server's and load generator's CPU per request (the machine may have 2 cores: the load
generator's share is CPU the server did not get). The goal the issue sets: micro-batched torch
>= 10x the naive baseline's requests/s at an equal or better p99.

    python -m ops.bench_serve --checkpoint runs/demo/sft
    python -m ops.bench_serve --checkpoint runs/demo/sft --duration 10 --configs generate,torch-batched --json out.json

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
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ops.servers import HOST, free_port

ROOT = Path(__file__).resolve().parents[1]
CONFIG_NAMES = ("generate", "torch-b1", "torch-batched", "vllm")
GOAL_RATIO = 10.0
KAFKA_DOWN = "Kafka unreachable"  # the one /readyz reason this benchmark expects


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


def server_env(config: ServeConfig, key_digest: str, data: Path, spool: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RECAST_ENGINE": config.engine,
        "RECAST_BATCH_MAX_SIZE": str(config.batch_max_size),
        "RECAST_BATCH_MAX_WAIT_MS": str(config.batch_max_wait_ms),
        "RECAST_API_KEYS": key_digest,
        "RECAST_DATA_DIR": str(data),
        "RECAST_SPOOL_DIR": str(spool),
        # Nothing listens there: impressions go to the spool, as the service does while Kafka is down.
        "RECAST_KAFKA_BOOTSTRAP": f"{HOST}:{free_port()}",
        "RECAST_REGISTRY_POLL_S": "0",  # serve the given checkpoint only; no database needed
    }


def start_server(config: ServeConfig, checkpoint: Path, env: dict, port: int, log: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "ops.cli", "serve", "--checkpoint", str(checkpoint), "--engine", config.engine,
            "--host", HOST, "--port", str(port), "--log-level", "warning"]  # fmt: skip
    with log.open("wb") as out:  # the child keeps its own descriptor; ours can close
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def ready(status: int, body: bytes) -> bool:
    """/readyz says ready, or says the model is loaded and Kafka is its only complaint: the benchmark runs
    without a broker on purpose (impressions spool), which the service reports as not ready."""
    if status == 200:
        return True
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return status == 503 and answer.get("model_version") is not None and answer.get("reasons") == [KAFKA_DOWN]


def probe(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:  # 503 while the model loads (or while Kafka is down)
        return exc.code, exc.read()
    except OSError:  # not listening yet
        return 0, b""


def wait_ready(proc: subprocess.Popen, port: int, timeout: float) -> float:
    """Seconds until the server was ready (see :func:`ready`); raises RuntimeError when it exits or times out."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before it was ready")
        if ready(*probe(f"http://{HOST}:{port}/readyz")):
            return time.monotonic() - start
        time.sleep(0.25)
    raise RuntimeError(f"/readyz did not report a loaded model within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen, grace: float = 20.0) -> int:
    """SIGTERM (uvicorn drains and runs the lifespan's shutdown), SIGKILL if it has not exited in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


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


def run_loadgen(port: int, key: str, args: argparse.Namespace, out: Path) -> dict:
    argv = [sys.executable, "-m", "ops.loadgen", "--url", f"http://{HOST}:{port}/v1/recommend", "--key", key,
            "--data", str(args.data), "--k", str(args.k), "--concurrency", str(args.concurrency),
            "--duration", str(args.duration), "--warmup", str(args.warmup), "--json", str(out)]  # fmt: skip
    limit = args.warmup + args.duration + 120  # in-flight requests may take their 30 s timeout
    done = subprocess.run(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=limit)  # fmt: skip
    if not out.exists():
        raise RuntimeError(f"the load generator wrote no result (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(out.read_text())


def bench_config(config: ServeConfig, args: argparse.Namespace, work: Path) -> dict:
    key = secrets.token_urlsafe(24)
    digest = hashlib.sha256(key.encode()).hexdigest()
    spool, log = work / f"{config.name}-spool", work / f"{config.name}.log"
    port = free_port()
    env = server_env(config, digest, args.data.resolve(), spool)
    cell: dict = {"config": config.name, "engine": config.engine, "batch_max_size": config.batch_max_size,
                  "batch_max_wait_ms": config.batch_max_wait_ms, "log": str(log)}  # fmt: skip
    proc = start_server(config, args.checkpoint, env, port, log)
    try:
        cell["ready_s"] = round(wait_ready(proc, port, args.ready_timeout), 2)
        cpu0 = cpu_seconds(proc.pid)
        cell["load"] = run_loadgen(port, key, args, work / f"{config.name}.json")
        cpu1 = cpu_seconds(proc.pid)
        answered = cell["load"]["answered"]
        if cpu0 is not None and cpu1 is not None and answered:
            cell["server_cpu_ms_per_request"] = round(1000 * (cpu1 - cpu0) / answered, 2)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
        cell["error"] = str(exc)
        cell["log_tail"] = log_tail(log)
    finally:
        cell["exit_status"] = stop_server(proc)
        shutil.rmtree(spool, ignore_errors=True)  # spooled impressions are not what is measured
    return cell


# ---------------------------------------------------------------- the report


def compare(cells: list[dict]) -> dict:
    """Throughput ratios to the baseline (the first configuration that ran) and the issue's goal."""
    ok = [c for c in cells if "load" in c and c["load"]["requests_per_s"] > 0]
    if not ok:
        return {"baseline": None, "goal_met": None}
    base = ok[0]
    for c in ok:
        c["ratio"] = round(c["load"]["requests_per_s"] / base["load"]["requests_per_s"], 2)
    batched = next((c for c in ok if c["config"] == "torch-batched"), None)
    goal = None
    if base["config"] == "generate" and batched is not None:
        goal = bool(
            batched["ratio"] >= GOAL_RATIO and batched["load"]["latency_ms"]["p99"] <= base["load"]["latency_ms"]["p99"]
        )
    return {"baseline": base["config"], "goal_met": goal}


def table(result: dict) -> str:
    m, a = result["machine"], result["load"]
    lines = [
        f"serving benchmark: {m['cpus']} CPUs, Python {m['python']}, torch {m['torch']}, {m['platform']}",
        f"checkpoint {result['checkpoint']}; load: k={a['k']}, concurrency {a['concurrency']}, "
        f"{a['duration_s']:g} s measured after {a['warmup_s']:g} s warm-up, closed loop",
        "",
        f"  {'config':<15}{'batch':>6}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'errors':>8}"
        f"{'vs base':>9}{'srv CPU':>9}{'gen CPU':>9}",
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
        lines.append(
            f"  {c['config']:<15}{c['batch_max_size']:>6}{r['requests_per_s']:>10.1f}{lat['p50']:>10.1f}"
            f"{lat['p95']:>10.1f}{lat['p99']:>10.1f}{errors:>8}{ratio:>9}{srv:>9}{r['client_cpu_ms_per_request']:>9.2f}"
        )
    lines += ["", "  batch: RECAST_BATCH_MAX_SIZE; srv/gen CPU: server / load generator CPU ms per request"]
    goal = result["summary"]["goal_met"]
    verdict = "not measured (needs generate and torch-batched)" if goal is None else ("MET" if goal else "NOT MET")
    lines.append(f"  goal (torch-batched >= {GOAL_RATIO:g}x generate's req/s at equal or better p99): {verdict}")
    for c in result["cells"]:
        if "log_tail" in c:
            lines += ["", f"--- {c['config']}: last lines of {c['log']}", c["log_tail"]]
    return "\n".join(lines)


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
    parser.add_argument("--concurrency", type=int, default=16, help="load generator connections (default 16)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per config (default 20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first (default 3)")
    parser.add_argument("--k", type=int, default=10, help="items per request (default 10)")
    parser.add_argument("--batch-max-size", type=int, default=32, help="micro-batch size of torch-batched/vllm")
    parser.add_argument("--batch-max-wait-ms", type=float, default=2.0, help="micro-batch wait of torch-batched/vllm")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="seconds a server may take to be ready")
    parser.add_argument("--json", type=Path, default=None, help="also write the full result as JSON here")
    args = parser.parse_args(argv)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(args.configs) - set(CONFIG_NAMES))
    if unknown or not args.configs:
        parser.error(f"--configs: unknown {unknown}; choose from {', '.join(CONFIG_NAMES)}")
    if not (args.checkpoint / "manifest.json").is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no manifest.json (train one with `recast train`)")
    if not (args.data / "valid.csv").is_file():
        parser.error(f"--data {args.data}: no valid.csv")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.checkpoint = args.checkpoint.resolve()
    work = Path(tempfile.mkdtemp(prefix="recast-bench-serve-"))
    cells = []
    for config in configs(args):
        if config.engine == "vllm" and not vllm_available():
            cells.append({"config": config.name, "skipped": "vllm: not installed in this environment"})
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {config.name}: starting the server", file=sys.stderr, flush=True)
        cells.append(bench_config(config, args, work))
    result = {
        "machine": machine(),
        "checkpoint": str(args.checkpoint),
        "logs": str(work),
        "load": {"k": args.k, "concurrency": args.concurrency, "duration_s": args.duration, "warmup_s": args.warmup},
        "cells": cells,
    }
    result["summary"] = compare(cells)
    print(table(result))
    print(f"\nserver logs: {work}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
