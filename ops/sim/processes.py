"""The service and the ingestion worker as subprocesses on 127.0.0.1: start, wait until ready, stop.

The demos run them exactly as an operator would (``recast serve``, ``recast ingest``), each logging to
its own file under the run folder, so the terminal shows the demo's progress and nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ops.stack.servers import HOST, free_port

ROOT = Path(__file__).resolve().parents[2]


def recast_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """``python -m ops.cli <args>`` with ``env`` on top of this process's environment, output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "ops.cli", *args], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env=full)  # fmt: skip


def start_api(env: dict[str, str], log: Path, checkpoint: Path | None = None,
              port: int | None = None) -> tuple[subprocess.Popen, str]:  # fmt: skip
    """``recast serve`` on ``port`` (default: a free one); returns the process and its URL (not yet ready: see
    :func:`wait_ready`)."""
    port = port or free_port()
    args = ["serve", "--host", HOST, "--port", str(port), "--log-level", "warning"]
    args += ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
    return recast_process(args, env, log), f"http://{HOST}:{port}"


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> float:
    """Seconds until ``/readyz`` answered 200 (a model is loaded and the broker is reachable)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        except OSError:  # not listening yet, or 503 while it loads
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the API was not ready within {timeout:.0f} s")


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM (the API flushes its publisher, the worker finishes its batch), then SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
