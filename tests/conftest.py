"""Shared fixtures: a small synthetic data set in the shipped format, the shipped one, the embedded
stack and a tiny trained checkpoint."""

from __future__ import annotations

import csv
import json
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
HEADER = ["user_id", "history_item_title", "item_title", "history_item_id", "item_id", "history_item_sid", "item_sid"]
NUM_ITEMS = 40
# Items sharing one SID: a pair whose ids sort differently as text ("10" < "9") and a triple.
COLLISIONS = [["9", "10"], ["3", "20", "31"]]


def synthetic_sids() -> dict[str, list[str]]:
    sids = {str(i): [f"<a_{i % 5}>", f"<b_{i % 7}>", f"<c_{i}>"] for i in range(NUM_ITEMS)}
    for first, *rest in COLLISIONS:
        for item_id in rest:
            sids[item_id] = list(sids[first])
    return sids


def synthetic_rows(seed: int = 0) -> list[dict[str, str]]:
    """Rows in the shipped layout; each user's rows chain and users interleave in the file."""
    rng = random.Random(seed)
    sids = {k: "".join(v) for k, v in synthetic_sids().items()}
    per_user = []
    for u in range(12):
        length = 16 if u == 0 else rng.randint(2, 6)  # user 0's histories exceed 10 items
        seq = [str(rng.randrange(NUM_ITEMS)) for _ in range(length)]
        start = 1 if u == 0 else rng.randint(1, length - 1)
        user_rows = []
        for t in range(start, length):
            hist, target = seq[:t][-10:], seq[t]
            user_rows.append(
                {
                    "user_id": f"U{u}",
                    "history_item_title": str([f"Item {i}" for i in hist]),
                    "item_title": f"Item {target}",
                    "history_item_id": str([int(i) for i in hist]),
                    "item_id": target,
                    "history_item_sid": str([sids[i] for i in hist]),
                    "item_sid": sids[target],
                }
            )
        per_user.append(user_rows)
    rows = []
    while any(per_user):  # round robin keeps each user's rows in order
        for user_rows in per_user:
            if user_rows:
                rows.append(user_rows.pop(0))
    return rows


def write_dataset(directory: Path, seed: int = 0) -> Path:
    sids = synthetic_sids()
    items = {i: {"title": f"Item {i}", "description": "", "brand": "", "categories": ""} for i in sids}
    (directory / "items.json").write_text(json.dumps(items, indent=2), encoding="utf-8")
    (directory / "sid_index.json").write_text(json.dumps(sids), encoding="utf-8")
    (directory / "info.txt").write_text(
        "".join(f"{''.join(sid)}\tItem {i}\t{i}\n" for i, sid in sids.items()), encoding="utf-8"
    )
    with (directory / "valid.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(synthetic_rows(seed))
    return directory


@pytest.fixture(scope="session")
def make_dataset(tmp_path_factory):
    """Factory: every call writes a fresh synthetic data set and returns its directory."""

    def make(seed: int = 0) -> Path:
        return write_dataset(tmp_path_factory.mktemp("synthetic"), seed)

    return make


@pytest.fixture(scope="session")
def shipped_data() -> Path:
    return REPO_ROOT / "data" / "amazon18-industrial"


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


@contextmanager
def fresh_database(stack, prefix: str) -> Iterator[str]:
    """A new database on the session's Postgres, migrated to head; its SQLAlchemy URL. Dropped afterwards."""
    from sqlalchemy.engine import make_url

    from ops.stack import migrate
    from ops.stack.servers import create_database, drop_database

    server, name = stack.services["postgres"].url, f"{prefix}_{uuid.uuid4().hex[:8]}"
    create_database(server, name)
    try:
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        migrate(url)
        yield url
    finally:
        drop_database(server, name)


@pytest.fixture
def database_url(stack) -> Iterator[str]:
    """A fresh, migrated database for one test (see :func:`fresh_database`)."""
    with fresh_database(stack, "t") as url:
        yield url
