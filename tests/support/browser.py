"""Headless Chromium for the report tests: Debian's ``chromium`` package, installed on first use when missing."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]  # fmt: skip


def ensure_chromium() -> str:
    """The chromium binary; ``apt-get install -y chromium`` first when it is not there (the test machines run as
    root with Debian's package index reachable). Raises RuntimeError with apt's output when that fails."""
    found = shutil.which("chromium")
    if found:
        return found
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:  # an old or missing package index: update it once and try again
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, timeout=600)
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    found = shutil.which("chromium")
    if not found:
        raise RuntimeError(f"chromium could not be installed: {proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return found


def screenshot(chromium: str, page: Path, out: Path, width: int = 1280, height: int = 2600) -> Path:
    """Open ``page`` (a local file) in a fresh profile and save a ``width`` x ``height`` PNG of it."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
             f"--screenshot={out}", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return out
