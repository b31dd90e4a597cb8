"""One refresh attempt against a real Postgres: the window it reads, what it writes, when it refuses or skips."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import create_engine, insert, select, text

from learner import registry
from learner.refresh.run import LOCK_KEY, refresh
from recast.checkpoint import load_checkpoint
from recast.dataset import load_catalog, load_item_entries
from schemas.tables import ModelActivation, TrainingRun
from serving.catalog import record_addition, record_retirement
from tests.support.groups import DAY0, PERIOD_S, manifest, seed_groups, shipped_rows

RUNS = TrainingRun.__table__


def run_row(url: str, run_id: int) -> dict:
    engine = create_engine(url)
    with engine.connect() as conn:
        row = dict(conn.execute(select(RUNS).where(RUNS.c.id == run_id)).one()._mapping)
    engine.dispose()
    return row


def test_a_refresh_learns_the_window_and_publishes_a_child_of_the_served_model(gated, served, shipped_data):
    seed_groups(gated.database_url, shipped_rows(shipped_data, 60), DAY0)
    engine = create_engine(gated.database_url)
    with engine.begin() as conn:  # an item retired before the refresh: the child names the version it trained under
        record_retirement(conn, load_catalog(shipped_data), ["3112"], "out_of_stock", "test")
    engine.dispose()
    out = refresh(gated, now=DAY0 + timedelta(hours=2, minutes=5))
    assert (out.status, out.decision, out.parent) == ("succeeded", "published", served), out.reason

    row = run_row(gated.database_url, out.run_id)
    assert (row["phase"], row["result_version"], row["base_version"]) == ("done", out.version, served)
    assert row["window_start"] is None and row["window_end"] == DAY0 + timedelta(hours=2)
    assert row["counts"]["groups"] == 60 and row["counts"]["train_groups"] + row["counts"]["slice_groups"] == 60
    assert row["counts"]["slice_groups"] == 12 and row["heldout_from"] == DAY0 + timedelta(seconds=480)
    assert set(row["timings"]) >= {"reading", "sft", "rl", "scorers", "saving", "gate", "publishing"}
    assert row["metrics"]["gate"]["offline"]["rows"] == 40 and "served" in row["metrics"]["gate"]["offline"]

    engine = create_engine(gated.database_url)
    with engine.connect() as conn:
        child = registry.get(conn, out.version)
        assert (child.status, child.parent_version) == ("active", served)
        assert registry.get(conn, served).status == "retired"
        trail = conn.execute(select(ModelActivation.__table__).order_by(ModelActivation.id.desc())).first()
        assert (trail.action, trail.previous_version, trail.actor) == ("publish", served, f"refresh run {out.run_id}")
    engine.dispose()
    m = manifest(child.path)
    assert m["kind"] == "refresh" and m["parent"]["version"] == served
    assert m["refresh"]["window"]["end"] == (DAY0 + timedelta(hours=2)).isoformat()
    assert (m["catalog"]["version"], m["catalog"]["retired"]) == (2, {"3112": "out_of_stock"})


def test_a_refresh_learns_the_interactions_of_items_added_online(gated, served, shipped_data):
    catalog, texts = load_catalog(shipped_data), load_item_entries(shipped_data)
    engine = create_engine(gated.database_url)
    with engine.begin() as conn:
        added, _, _ = record_addition(conn, catalog, {"900001": dict(texts["7"])}, "test", texts=texts)
    engine.dispose()
    rows = shipped_rows(shipped_data, 60)
    rows = [(u, h, "900001") if n < 30 and n % 3 == 0 else (u, h, t) for n, (u, h, t) in enumerate(rows)]
    seed_groups(gated.database_url, rows, DAY0)  # the new item bought on 10 lists, before the held-out slice
    out = refresh(gated, now=DAY0 + timedelta(hours=2, minutes=5))
    assert out.status == "succeeded", out.reason
    engine = create_engine(gated.database_url)
    with engine.connect() as conn:
        child = registry.get(conn, out.version)
    engine.dispose()
    assert manifest(child.path)["catalog"]["version"] == added.version
    learnt = load_checkpoint(child.path)
    assert learnt.item_ids[-1] == "900001" and len(learnt.item_ids) == len(catalog) + 1
    assert "".join(learnt.tokenizer.vocab[t] for t in learnt.codes[-1].tolist()) == added.codes["900001"]
    assert learnt.transition.popularity[-1] > 0  # its purchases were counted
    # Bought on fewer lists than RefreshConfig.added_mark_until, it is still read as an item added online.
    assert learnt.transition.added_items()[-1] and not learnt.transition.added_items()[:-1].any()
    assert learnt.text.num_items == len(catalog) + 1


def test_nothing_new_is_skipped_and_a_new_period_is_read_from_where_the_last_one_ended(gated, served, shipped_data):
    seed_groups(gated.database_url, shipped_rows(shipped_data, 60), DAY0)
    first = refresh(gated, now=DAY0 + timedelta(hours=1, minutes=5))
    assert first.decision == "published"
    again = refresh(gated, now=DAY0 + timedelta(hours=1, minutes=30))
    assert again.status == "skipped" and "no complete period" in again.reason
    later = refresh(gated, now=DAY0 + timedelta(hours=3))
    assert later.status == "skipped" and "0 new closed groups, fewer than the 20" in later.reason
    seed_groups(gated.database_url, shipped_rows(shipped_data, 30, skip=100), DAY0 + timedelta(hours=3))
    fourth = refresh(gated, now=DAY0 + timedelta(hours=4, minutes=1))
    assert fourth.status == "succeeded" and fourth.parent == first.version
    row = run_row(gated.database_url, fourth.run_id)
    assert row["window_start"] == DAY0 + timedelta(hours=1) and row["counts"]["groups"] == 30


def test_a_window_with_open_groups_waits(gated, served, shipped_data):
    ids = seed_groups(gated.database_url, shipped_rows(shipped_data, 40), DAY0)
    engine = create_engine(gated.database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE reward_groups SET window_open = true WHERE request_id = :r"), {"r": ids[-1]})
    engine.dispose()
    out = refresh(gated, now=DAY0 + timedelta(seconds=PERIOD_S + 60))
    assert out.status == "skipped" and out.reason.startswith("1 groups of the window are still open")


def test_a_candidate_below_the_bar_is_registered_rejected_never_served_and_its_data_is_read_again(
    gated, served, shipped_data
):
    seed_groups(gated.database_url, shipped_rows(shipped_data, 60), DAY0)
    strict = gated.model_copy(update={"gate_tolerance": -1.0})  # it would have to gain a whole HR@10
    out = refresh(strict, now=DAY0 + timedelta(hours=2))
    assert (out.status, out.decision) == ("succeeded", "rejected")
    assert "below the bar" in out.reason
    engine = create_engine(gated.database_url)
    with engine.connect() as conn:
        assert registry.active(conn).version == served
        rejected = registry.get(conn, out.version)
        assert rejected.status == "rejected" and rejected.reason == out.reason
    engine.dispose()
    with pytest.raises(registry.RegistryError, match="was rejected"):
        with engine.begin() as conn:
            registry.activate(conn, out.version)
    again = refresh(gated, now=DAY0 + timedelta(hours=2))
    assert again.decision == "published" and run_row(gated.database_url, again.run_id)["counts"]["groups"] == 60


def test_without_a_served_model_there_is_nothing_to_refresh(loop_settings):
    out = refresh(loop_settings, now=DAY0)
    assert out.status == "skipped" and "no active model" in out.reason


def test_a_held_lock_refuses_the_attempt_and_the_next_holder_fails_a_dead_run(gated, served, shipped_data):
    seed_groups(gated.database_url, shipped_rows(shipped_data, 40), DAY0)
    engine = create_engine(gated.database_url)
    with engine.connect() as holder:
        assert holder.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
        with engine.begin() as conn:  # a run whose worker died while it held the lock
            dead = conn.execute(insert(RUNS).values(kind="refresh", status="running", phase="sft")
                                .returning(RUNS.c.id)).scalar_one()  # fmt: skip
        refused = refresh(gated, now=DAY0 + timedelta(hours=2))
        assert refused.status == "refused" and refused.reason == f"another refresh holds the lock (run {dead})"
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
        holder.commit()
    out = refresh(gated, now=DAY0 + timedelta(hours=2))
    assert out.status == "succeeded"
    row = run_row(gated.database_url, dead)
    assert row["status"] == "failed" and "worker stopped before finishing" in row["error"]
    engine.dispose()
