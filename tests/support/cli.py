"""The ``recast`` command as users and containers run it: ``python -m ops.cli`` in a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.paths import ROOT


def recast_env(**settings) -> dict[str, str]:
    """This process's environment (the conftest cleared every ``RECAST_*``), plus ``RECAST_<FIELD>`` for each
    keyword (a ``Settings`` field name) and PYTHONPATH at the repository root."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **{f"RECAST_{k.upper()}": str(v) for k, v in settings.items()}}


def recast(*args: str, check: bool = True, env: dict[str, str] | None = None,
           timeout: float = 600) -> subprocess.CompletedProcess:  # fmt: skip
    """Run ``recast ARGS`` to completion; ``env`` adds to this process's environment.

    ``check``: a non-zero exit fails the test with the command's stderr."""
    proc = subprocess.run([sys.executable, "-m", "ops.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**recast_env(), **(env or {})})  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"recast {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def start_recast(*args: str, env: dict[str, str], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                 text: bool = True) -> subprocess.Popen:  # fmt: skip
    """Start ``recast ARGS`` in the background (a worker the test will kill or wait for); ``env`` is the
    whole environment (see :func:`recast_env`)."""
    return subprocess.Popen([sys.executable, "-m", "ops.cli", *args], cwd=ROOT, env=env, stdout=stdout,
                            stderr=stderr, text=text)  # fmt: skip


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Kill a background ``recast`` if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=timeout)
