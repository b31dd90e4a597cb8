"""The model registry against a real Postgres: register, activate (one active at a time), roll back."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import create_engine

from learner.registry import RegistryError, activate, get, listing, register
from ops.bench.variants import perturbed_copy as variant
from recast.checkpoint import MANIFEST, sha256_file


@pytest.fixture
def db(database_url):
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def test_register_activate_and_roll_back(db, tmp_path, shipped_data, tiny_checkpoint):
    second = variant(tiny_checkpoint, tmp_path / "second", shipped_data, seed=3)
    with db.begin() as conn:
        first = register(conn, tiny_checkpoint)
        assert first.status == "candidate" and first.sha256 == sha256_file(tiny_checkpoint / MANIFEST)
        assert register(conn, tiny_checkpoint).version == first.version  # registering again is harmless
        newer = register(conn, second)
        activate(conn, first.version)
        activate(conn, newer.version)
        assert {r.version: r.status for r in listing(conn)} == {first.version: "retired", newer.version: "active"}
        activate(conn, first.version)  # a rollback
        assert (get(conn, first.version).status, get(conn, newer.version).status) == ("active", "retired")


def test_a_broken_checkpoint_or_unknown_version_is_refused(db, tmp_path, tiny_checkpoint):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / "item_codes.json").write_text("[]")
    with db.begin() as conn:
        with pytest.raises(RegistryError, match="sha256 does not match"):
            register(conn, broken)
        with pytest.raises(RegistryError, match="no model 'nope'"):
            activate(conn, "nope")
