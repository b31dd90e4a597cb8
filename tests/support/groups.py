"""Reward groups written into a real, migrated Postgres as the ingestion worker leaves them (the refresh's input),
from rows of the shipped data set."""

from __future__ import annotations

import ast
import csv
import json
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert

from schemas.tables import ImpressionRow, RewardGroup

PERIOD_S = 3600
DAY0 = datetime(2026, 11, 30, tzinfo=UTC)  # groups are logged in the hour after this


def shipped_rows(data: Path, n: int, skip: int = 0) -> list[tuple[str, list[str], str]]:
    """(user, history, target) of rows ``skip .. skip + n`` of the shipped valid.csv."""
    with (data / "valid.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[skip : skip + n]
    return [(r["user_id"], [str(i) for i in ast.literal_eval(r["history_item_id"])], r["item_id"]) for r in rows]


def seed_groups(url: str, rows, start: datetime, version: str = "seed", hit_every: int = 3,
                organic_every: int = 2, segments: tuple[str, ...] = ("default",),
                organic_types: tuple[str, ...] = ("purchase",)) -> list[str]:  # fmt: skip
    """One closed group per row: ten served items (the target among them on every ``hit_every``-th row, with a
    purchase), otherwise the target found off the list on every ``organic_every``-th row. A user's groups have
    the request segment ``segments[crc32(user) % len]``; the k-th organic outcome is ``organic_types[k % len]``.
    Returns request ids."""
    engine = create_engine(url)
    ids, organic_rows = [], 0
    with engine.begin() as conn:
        for n, (user, history, target) in enumerate(rows):
            segment = segments[zlib.crc32(user.encode()) % len(segments)]
            request_id = f"r{start:%H%M}-{n}"
            opened = start + timedelta(seconds=10 * n)
            served = [str((int(target) + k + 1) % 3686) for k in range(10)]
            rewards = [0.0] * 10
            organic = []
            if n % hit_every == 0:
                served[3], rewards[3] = target, 1.0
            elif n % organic_every == 0:
                organic = [{"item_id": target, "type": organic_types[organic_rows % len(organic_types)],
                            "event_id": f"e{request_id}"}]  # fmt: skip
                organic_rows += 1
            items = [{"item_id": i, "score": -float(k), "rank": k + 1} for k, i in enumerate(served)]
            conn.execute(insert(ImpressionRow.__table__).values(
                request_id=request_id, user_id=user, segment=segment, history=history, items=items,
                model_version=version, schema_version=1, ts=opened))  # fmt: skip
            conn.execute(insert(RewardGroup.__table__).values(
                request_id=request_id, user_id=user, segment=segment, model_version=version, history=history,
                items=served, rewards=rewards, organic_positives=organic, all_zero=not any(rewards),
                window_open=False, opened_at=opened, closes_at=opened + timedelta(minutes=30),
                closed_at=opened + timedelta(minutes=35)))  # fmt: skip
            ids.append(request_id)
    engine.dispose()
    return ids


def manifest(path: str | Path) -> dict:
    return json.loads((Path(path) / "manifest.json").read_text())
