"""What the reliability benchmarks share: an API process on an embedded stack, its memory, a CPU calibration.

Absolute figures on these shared 2-core machines move 2-3x with other jobs (platform notes), so every
benchmark prints :func:`calibrate` beside them: the time of one fixed Python loop on one core.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def calibrate() -> float:
    """Seconds of a fixed loop of 5 million additions (about 0.25 s on an idle core here)."""
    t0, x = time.perf_counter(), 0
    for i in range(5_000_000):
        x += i
    return round(time.perf_counter() - t0, 3)


def rss_mib(pid: int) -> float | None:
    """Resident memory of a live process, MiB (Linux /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Api:
    url: str
    pid: int
    keys: dict[str, str]  # name -> key


def key_pair(name: str) -> tuple[str, str]:
    key = secrets.token_urlsafe(24)
    return key, f"{name}:{hashlib.sha256(key.encode()).hexdigest()}"


@contextmanager
def api_on_stack(run_dir: Path, checkpoint: Path, data: Path, env: dict[str, str], names=("load",)):
    """An embedded stack under ``run_dir`` and ``recast serve`` on it (its log in ``run_dir/api.log``), with a
    fresh key per name; everything stopped afterwards."""
    from ops.sim import processes
    from ops.stack import down, up
    from schemas.settings import Settings

    settings = Settings()
    state = up(run_dir / "stack", [settings.impressions_topic, settings.outcomes_topic], settings.topic_partitions)
    pairs = {name: key_pair(name) for name in names}
    full = {**state.env(), "RECAST_DATA_DIR": str(data), "RECAST_REGISTRY_POLL_S": "0",
            "RECAST_SPOOL_DIR": str(run_dir / "spool"), "RECAST_API_KEYS": ",".join(e for _, e in pairs.values()),
            "RECAST_ACCESS_LOG": "false", **env}  # fmt: skip
    proc = None
    try:
        proc, url = processes.start_api(full, run_dir / "api.log", checkpoint)
        processes.wait_ready(url, proc)
        yield Api(url, proc.pid, {name: key for name, (key, _) in pairs.items()})
    finally:
        if proc is not None:
            processes.stop(proc)
        down(run_dir / "stack")


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")
               or line.startswith(name + "{"))  # fmt: skip


def loadgen_args(url: str, key: str, data: Path, **overrides) -> argparse.Namespace:
    """Arguments for :func:`ops.bench.loadgen.drive` as its command line would make them."""
    from ops.bench.loadgen import parse_args

    args = parse_args(["--url", f"{url}/v1/recommend", "--key", key, "--data", str(data)])
    for name, value in overrides.items():
        setattr(args, name, value)
    return args
