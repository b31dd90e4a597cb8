"""Shared fixtures: a clean ``RECAST_*`` environment, a small synthetic data set in the shipped format,
the shipped one, the embedded stack, a tiny trained checkpoint and fresh databases.

Helpers (waits, subprocesses, Kafka, row counts, data slices) live in :mod:`tests.support`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.data import write_dataset
from tests.support.databases import fresh_database
from tests.support.paths import DATA


@pytest.fixture(scope="session", autouse=True)
def no_ambient_recast_settings() -> Iterator[None]:
    """Every ``RECAST_*`` variable of the caller's shell is removed for the whole session (and put back after):
    a developer's exported stack URLs or a beam width must not change what the tests see. Session-wide, so the
    session fixtures (the stack, the checkpoint) and every subprocess a test starts see the defaults too; a
    test that needs a variable sets it itself (``monkeypatch.setenv`` or a subprocess ``env``)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("RECAST_")]:
            mp.delenv(name)
        yield


@pytest.fixture(autouse=True)
def no_leaked_recast_settings() -> Iterator[None]:
    """The same per test, and the cached ``get_settings()`` forgotten, so one test's variables never reach the next."""
    from schemas.settings import get_settings

    get_settings.cache_clear()
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("RECAST_")]:
            mp.delenv(name)
        yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def make_dataset(tmp_path_factory):
    """Factory: every call writes a fresh synthetic data set and returns its directory."""

    def make(seed: int = 0) -> Path:
        return write_dataset(tmp_path_factory.mktemp("synthetic"), seed)

    return make


@pytest.fixture(scope="session")
def shipped_data() -> Path:
    return DATA


@pytest.fixture(scope="session")
def stack():
    """The embedded stack (Postgres, Tansu, Redis on 127.0.0.1), started once per test session
    in a fresh folder, so every session gets a fresh database and an empty broker.

    The folder is not under pytest's temporary root: every pytest process that starts resets that
    root to mode 0700, and Postgres runs as another user, so a second session starting beside this
    one would take the running server's data directory away from it."""
    import shutil
    import tempfile

    from ops.stack import down, up
    from schemas.settings import Settings

    settings = Settings()
    root = Path(tempfile.mkdtemp(prefix="recast-test-stack-"))
    try:
        yield up(root, [settings.impressions_topic, settings.outcomes_topic], settings.topic_partitions)
    finally:
        down(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, shipped_data) -> Path:
    """A real checkpoint directory (Llama weights, tokenizer, item codes, manifest) trained on every
    row of the shipped ``valid.csv`` with the tiny preset: trained, so beams are not ties."""
    from dataclasses import replace

    from learner.sft_trainer import train_sft
    from recast.sft import preset

    out = tmp_path_factory.mktemp("serving") / "ckpt"
    # One head of 32 dimensions: vLLM's CPU attention supports head sizes of 32 and up (the tiny preset's is 16).
    config = replace(preset("tiny"), epochs=1, n_head=1)
    train_sft(shipped_data, shipped_data / "valid.csv", config, out, progress=False)
    return out


@pytest.fixture
def database_url(stack) -> Iterator[str]:
    """A fresh, migrated database for one test (see :func:`tests.support.databases.fresh_database`)."""
    with fresh_database(stack, "t") as url:
        yield url
