"""The registry is the truth: /readyz, /v1/admin/model and the registry's active row agree, or the service says
it is not ready and why; a refused swap is retried as soon as the checkpoint's files change (real Postgres,
real HTTP, real checkpoints); a model trained on a catalog version the replica has not polled yet is served."""

from __future__ import annotations

import shutil
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine

from learner.registry import RegistryError, activate, register
from ops.bench.variants import perturbed_copy
from schemas import registry as statements
from tests.support.api import ADMIN, ApiServer, api_settings
from tests.support.cli import recast
from tests.support.databases import fresh_database
from tests.support.retire import trained_after_retiring
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow


@contextmanager
def registry_server(stack, tmp_path, shipped_data, tiny_checkpoint, name: str, **settings):
    """(server, engine, database url): a fresh database whose registry has a copy of the tiny checkpoint (``first``)
    active, and a service started without --checkpoint that serves what the registry names."""
    first = tmp_path / "first"
    shutil.copytree(tiny_checkpoint, first)
    with fresh_database(stack, name) as db:
        engine = create_engine(db)
        with engine.begin() as conn:
            activate(conn, register(conn, first).version, actor="test", reason="start")
        config = api_settings(stack, shipped_data, tmp_path / "spool", partitions=1, beam_width=10, database_url=db,
                              registry_poll_s=0.3, **settings)  # fmt: skip
        with ApiServer(config) as server:
            yield server, engine, db
        engine.dispose()


@pytest.fixture
def registry_env(stack, tmp_path, shipped_data, tiny_checkpoint):
    with registry_server(stack, tmp_path, shipped_data, tiny_checkpoint, "truth") as (server, engine, _):
        yield server, engine


def test_activating_a_version_whose_files_changed_is_refused(registry_env, tmp_path, shipped_data):
    _, engine = registry_env
    second = perturbed_copy(tmp_path / "first", tmp_path / "second", shipped_data, seed=1)
    with engine.begin() as conn:
        version = register(conn, second).version
    (second / "tokenizer_config.json").write_text("{}")  # changed after registration
    with engine.begin() as conn, pytest.raises(RegistryError, match="sha256 does not match"):
        activate(conn, version, actor="test", reason="should fail")


def test_the_service_says_it_disagrees_with_the_registry_and_retries_once_the_files_are_mended(
    registry_env, tmp_path, shipped_data
):
    server, engine = registry_env
    with server.client(ADMIN) as admin, server.client(None) as anyone:
        first = wait_for(
            lambda: admin.get("/v1/admin/model").json()["version"], "serving the registry's model", timeout=60
        )
        wait_for(lambda: anyone.get("/readyz").status_code == 200, f"ready: {anyone.get('/readyz').text}", timeout=60)
        second = perturbed_copy(tmp_path / "first", tmp_path / "second", shipped_data, seed=2)
        with engine.begin() as conn:
            version = register(conn, second).version
        good = (second / "item_codes.json").read_bytes()
        (second / "item_codes.json").write_bytes(good + b" ")  # damaged after registration
        with engine.begin() as conn:  # a writer that does not check (or files damaged after the check)
            for statement in statements.activation(version, first, "activate", "test", "damaged"):
                conn.execute(statement)

        def not_ready():  # once the swap was tried: its refusal is the reason
            r = anyone.get("/readyz")
            return r if r.status_code == 503 and "refused" in r.text else None

        refused = wait_for(not_ready, "/readyz reporting the disagreement", timeout=60)
        reason = " ".join(refused.json()["reasons"])
        assert f"serving {first}" in reason and version in reason and "sha256" in reason, reason
        status = admin.get("/v1/admin/model").json()
        assert status["version"] == first and status["registry"] == {**status["registry"], "version": version,
                                                                      "agrees": False}  # fmt: skip
        (second / "item_codes.json").write_bytes(good)  # mended: no new registration needed
        wait_for(
            lambda: admin.get("/v1/admin/model").json()["version"] == version, "the retry after the mend", timeout=60
        )
        ready = wait_for(lambda: (r := anyone.get("/readyz")).status_code == 200 and r, "ready again", timeout=60)
        assert ready.json()["model_version"] == version and ready.json()["registry"]["agrees"]


def test_a_model_trained_on_a_catalog_version_this_replica_has_not_polled_is_served(stack, tmp_path, shipped_data,
                                                                                     tiny_checkpoint):  # fmt: skip
    """A refresh child trained after a retirement made elsewhere: the replica reads the catalog before the swap
    instead of refusing the child until its next catalog poll (an hour away here)."""
    with (registry_server(stack, tmp_path, shipped_data, tiny_checkpoint, "unpolled", catalog_poll_s=3600)
          as (server, engine, db), server.client(ADMIN) as admin):  # fmt: skip
        wait_for(lambda: admin.get("/v1/admin/model").json()["version"], "serving the registry's model", timeout=60)
        assert server.services.live.current.version == 1  # read once, at start
        recast("items", "retire", "3112", "--reason", "retired",
               env={"RECAST_DATABASE_URL": db, "RECAST_DATA_DIR": str(shipped_data)})  # fmt: skip
        child = trained_after_retiring(tmp_path / "first", tmp_path / "child", "3112", 2)
        with engine.begin() as conn:
            version = register(conn, child).version
            activate(conn, version, actor="test", reason="the nightly refresh")
        wait_for(lambda: admin.get("/v1/admin/model").json()["version"] == version, "the child served",
                 timeout=60, state=lambda: server.services.watcher.note)  # fmt: skip
        assert server.services.live.current.version == 2 and "3112" in server.services.live.current.state.retired
        assert server.services.holder.swaps["refused"] == 0
