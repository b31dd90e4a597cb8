"""`recast registry` refuses with a reason and exit 2, never a traceback: a malformed manifest, a file the
manifest does not list, and an activation of a version whose files changed after it was registered."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def recast(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})  # fmt: skip


def test_refusals_are_reasons_with_exit_2(database_url, tmp_path, tiny_checkpoint):
    env = {"RECAST_DATABASE_URL": database_url}
    malformed = shutil.copytree(tiny_checkpoint, tmp_path / "malformed")
    (malformed / "manifest.json").write_text("{not json")
    extra = shutil.copytree(tiny_checkpoint, tmp_path / "extra")
    (extra / "notes.txt").write_text("unlisted")
    changed = shutil.copytree(tiny_checkpoint, tmp_path / "changed")
    version = recast("registry", "add", "--checkpoint", str(changed), env=env).stdout.split()[0]
    (changed / "tokenizer_config.json").write_text("{}")
    for args, reason in [
        (("registry", "add", "--checkpoint", str(malformed)), "not readable JSON"),
        (("registry", "add", "--checkpoint", str(extra)), "not in the manifest: notes.txt"),
        (("registry", "activate", version), "sha256 does not match"),
    ]:
        proc = recast(*args, env=env)
        assert proc.returncode == 2 and reason in proc.stderr, (args, proc.returncode, proc.stderr[-800:])
        assert "Traceback" not in proc.stderr
