"""Reward groups written into a real, migrated Postgres as the ingestion worker leaves them, and Settings that
point a refresh at that database with small, fast knobs."""

from __future__ import annotations

import ast
import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert

from learner.registry import activate, register
from schemas.settings import Settings
from schemas.tables import ImpressionRow, RewardGroup

PERIOD_S = 3600
DAY0 = datetime(2026, 11, 30, tzinfo=UTC)  # groups are logged in the hour after this


def shipped_rows(data: Path, n: int, skip: int = 0) -> list[tuple[str, list[str], str]]:
    """(user, history, target) of rows ``skip .. skip + n`` of the shipped valid.csv."""
    with (data / "valid.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[skip : skip + n]
    return [(r["user_id"], [str(i) for i in ast.literal_eval(r["history_item_id"])], r["item_id"]) for r in rows]


def seed_groups(url: str, rows, start: datetime, version: str = "seed", hit_every: int = 3,
                organic_every: int = 2) -> list[str]:  # fmt: skip
    """One closed group per row: ten served items (the target among them on every ``hit_every``-th row, with a
    purchase), otherwise the target found off the list on every ``organic_every``-th row. Returns request ids."""
    engine = create_engine(url)
    ids = []
    with engine.begin() as conn:
        for n, (user, history, target) in enumerate(rows):
            request_id = f"r{start:%H%M}-{n}"
            opened = start + timedelta(seconds=10 * n)
            served = [str((int(target) + k + 1) % 3686) for k in range(10)]
            rewards = [0.0] * 10
            organic = []
            if n % hit_every == 0:
                served[3], rewards[3] = target, 1.0
            elif n % organic_every == 0:
                organic = [{"item_id": target, "type": "purchase", "event_id": f"e{request_id}"}]
            items = [{"item_id": i, "score": -float(k), "rank": k + 1} for k, i in enumerate(served)]
            conn.execute(insert(ImpressionRow.__table__).values(
                request_id=request_id, user_id=user, segment="default", history=history, items=items,
                model_version=version, schema_version=1, ts=opened))  # fmt: skip
            conn.execute(insert(RewardGroup.__table__).values(
                request_id=request_id, user_id=user, segment="default", model_version=version, history=history,
                items=served, rewards=rewards, organic_positives=organic, all_zero=not any(rewards),
                window_open=False, opened_at=opened, closes_at=opened + timedelta(minutes=30),
                closed_at=opened + timedelta(minutes=35)))  # fmt: skip
            ids.append(request_id)
    engine.dispose()
    return ids


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


def manifest(path: str | Path) -> dict:
    return json.loads((Path(path) / "manifest.json").read_text())
