"""Fixtures of the learner's loop tests: Settings that point a refresh at a fresh database with small, fast
knobs, and the tiny checkpoint registered as the served model."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from learner.registry import activate, register
from recast.dataset import load_catalog, load_interactions, write_interactions
from schemas.settings import Settings
from tests.support.groups import PERIOD_S


@pytest.fixture
def loop_settings(database_url, tmp_path, shipped_data) -> Settings:
    return Settings(
        database_url=database_url, run_dir=tmp_path / "runs", data_dir=shipped_data,
        refresh_period_s=PERIOD_S, refresh_min_groups=20, refresh_rl_steps=2, refresh_sft_epochs=1,
        beam_width=20, gate_tolerance=0.5,
    )  # fmt: skip


@pytest.fixture
def served(loop_settings, tiny_checkpoint) -> str:
    """The tiny checkpoint registered and active: what a refresh starts from."""
    engine = create_engine(loop_settings.database_url)
    with engine.begin() as conn:
        version = register(conn, tiny_checkpoint).version
        activate(conn, version, actor="test", reason="the first model")
    engine.dispose()
    return version


@pytest.fixture
def gated(loop_settings, tmp_path, shipped_data):
    """Settings with a fixed offline split of 40 shipped rows (users the seeded groups do not use)."""
    split = tmp_path / "gate.csv"
    write_interactions(shipped_data / "valid.csv", split, set(range(4000, 4040)))
    assert len(load_interactions(split, load_catalog(shipped_data))) == 40
    return loop_settings.model_copy(update={"gate_split": split})
