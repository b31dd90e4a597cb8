"""`recast registry` as an operator runs it: real processes against a real Postgres."""

from __future__ import annotations

from ops.bench.variants import perturbed_copy
from ops.stack.servers import free_port
from tests.support.cli import recast


def test_add_activate_list_and_roll_back(database_url, tmp_path, shipped_data, tiny_checkpoint):
    env = {"RECAST_DATABASE_URL": database_url}
    newer = perturbed_copy(tiny_checkpoint, tmp_path / "newer", shipped_data, seed=5)
    first = recast("registry", "add", "--checkpoint", str(tiny_checkpoint), "--activate", env=env).stdout.split()
    second = recast("registry", "add", "--checkpoint", str(newer), env=env).stdout.split()
    assert first[1] == "active" and second[1] == "candidate"
    recast("registry", "activate", second[0], env=env)
    listed = {line.split()[0]: line.split()[1] for line in recast("registry", "list", env=env).stdout.splitlines()}
    assert listed == {first[0]: "retired", second[0]: "active"}
    recast("registry", "activate", first[0], env=env)  # roll back
    listed = {line.split()[0]: line.split()[1] for line in recast("registry", "list", env=env).stdout.splitlines()}
    assert listed == {first[0]: "active", second[0]: "retired"}


def test_refusals_say_why_and_exit_2(database_url, tmp_path):
    env = {"RECAST_DATABASE_URL": database_url}
    unknown = recast("registry", "activate", "nope", env=env, check=False)
    assert unknown.returncode == 2 and "no model 'nope'" in unknown.stderr
    missing = recast("registry", "add", "--checkpoint", str(tmp_path), env=env, check=False)
    assert missing.returncode == 2 and "no manifest.json" in missing.stderr
    nowhere = {"RECAST_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"}
    down = recast("registry", "list", env=nowhere, check=False)
    assert down.returncode == 2 and "unreachable" in down.stderr
