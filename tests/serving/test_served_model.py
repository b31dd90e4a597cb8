"""A checkpoint is served as it says: with anchored decoding (the merged beam) or with its learned ranker, retired
and excluded items kept out of both."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from learner.sft_trainer import train_sft
from recast.dataset import load_catalog
from recast.sft import preset
from schemas.settings import Settings
from serving.served_model import ModelLoadError, load_served_model

HISTORIES = [list(range(40, 52)), [3, 9], [5], []]


@pytest.fixture(scope="module")
def served(tmp_path_factory, shipped_data):
    config = replace(preset("tiny"), epochs=1, max_history=1, anchors=3, anchor_decay=0.5)
    out = tmp_path_factory.mktemp("anchored") / "ckpt"
    train_sft(shipped_data, shipped_data / "valid.csv", config, out, progress=False)
    # The policy's weight 1: the served list is the policy's beam, so the decoding shows in it.
    settings = Settings(data_dir=shipped_data, engine="torch", fusion_policy_weight=1.0, fusion_text_weight=0.0)
    model = load_served_model(out, load_catalog(shipped_data), settings)
    yield model
    model.close()


def test_the_service_ranks_with_the_checkpoints_anchors(served):
    rec = served.recommender
    assert (rec.anchors, rec.anchor_decay, rec.max_history) == (3, 0.5, 1)
    want = rec.rank(HISTORIES, rec.policy(HISTORIES), 10)
    got = served.rank(HISTORIES, [10] * len(HISTORIES), [set()] * len(HISTORIES))
    for row in range(len(HISTORIES)):
        assert [i for i, _ in got[row]] == [i for i, _ in want[row]], f"row {row}"
    plain = replace(rec, anchors=1)
    assert [i for i, _ in got[0]] != [i for i, _ in plain.rank(HISTORIES[:1], plain.policy(HISTORIES[:1]), 10)[0]]


def test_retired_and_removed_items_stay_out_of_every_anchors_beam(served):
    first = served.rank(HISTORIES, [10] * len(HISTORIES), [set()] * len(HISTORIES))
    removed = [{i for i, _ in r[:3]} for r in first]  # each request's own top three
    retired = torch.tensor(sorted({first[0][3][0], first[1][3][0]}))
    got = served.rank(HISTORIES, [10] * len(HISTORIES), [set()] * len(HISTORIES), removed=removed, retired=retired)
    gone = set(retired.tolist())
    for row, ranked in enumerate(got):
        items = [i for i, _ in ranked]
        assert len(items) == 10
        assert not (set(items) & (removed[row] | gone)), f"row {row}"
    # only the retired set: one live row shared by every prompt of every request
    only_retired = served.rank(HISTORIES, [10] * len(HISTORIES), [set()] * len(HISTORIES), retired=retired)
    assert all(len(r) == 10 and not ({i for i, _ in r} & gone) for r in only_retired)


@pytest.fixture(scope="module")
def ranked(tmp_path_factory, shipped_data):
    config = replace(preset("tiny"), epochs=1, ranker=True)
    out = tmp_path_factory.mktemp("ranked") / "ckpt"
    train_sft(shipped_data, shipped_data / "valid.csv", config, out, progress=False)
    model = load_served_model(out, load_catalog(shipped_data), Settings(data_dir=shipped_data, engine="torch"))
    yield model
    model.close()


def test_the_service_ranks_with_the_checkpoints_ranker(ranked):
    rec = ranked.recommender
    assert rec.ranker is not None and (ranked.path / "ranker.safetensors").is_file()
    want = rec.rank(HISTORIES, rec.policy(HISTORIES), 10)
    got = ranked.rank(HISTORIES, [10] * len(HISTORIES), [set()] * len(HISTORIES))
    for row in range(len(HISTORIES)):
        assert [i for i, _ in got[row]] == [i for i, _ in want[row]], f"row {row}"
    mixed = replace(rec, ranker=None)
    fixed = mixed.rank(HISTORIES, mixed.policy(HISTORIES), 10)
    assert any([i for i, _ in got[row]] != [i for i, _ in fixed[row]] for row in range(len(HISTORIES)))


def test_retired_and_removed_items_stay_out_of_the_ranked_lists(ranked):
    first = ranked.rank(HISTORIES, [10] * len(HISTORIES), [set()] * len(HISTORIES))
    removed = [{i for i, _ in r[:3]} for r in first]  # each request's own top three: the ranker's favourites
    retired = torch.tensor(sorted({first[0][3][0], first[1][3][0]}))
    got = ranked.rank(HISTORIES, [10] * len(HISTORIES), [set()] * len(HISTORIES), removed=removed, retired=retired)
    gone = set(retired.tolist())
    for row, listed in enumerate(got):
        items = [i for i, _ in listed]
        assert len(items) == 10
        assert not (set(items) & (removed[row] | gone)), f"row {row}"


def test_the_operators_policy_share_applies_to_the_rankers_blend(ranked, shipped_data):
    """RECAST_FUSION_POLICY_WEIGHT=1 serves the policy's beam as it is, ranker or not."""
    settings = Settings(data_dir=shipped_data, engine="torch", fusion_policy_weight=1.0, fusion_text_weight=0.0)
    model = load_served_model(ranked.path, load_catalog(shipped_data), settings)
    try:
        rec = model.recommender
        assert rec.ranker.policy_weight == 1.0
        got = model.rank(HISTORIES[:3], [10] * 3, [set()] * 3)
        beams = rec.policy(HISTORIES[:3])
        for row in range(3):
            assert [i for i, _ in got[row]] == [i for i, _ in beams.top(row, 10)], f"row {row}"
    finally:
        model.close()


def test_a_residual_policy_is_refused(tmp_path, shipped_data):
    """Fitted as a product with its ranker, it means nothing decoded alone; the service keeps what it serves."""
    config = replace(preset("tiny"), epochs=1, ranker=True, teacher="ranker", short_context=1, max_history=1,
                     long_windows=False, teacher_history=10, residual=1.0)  # fmt: skip
    train_sft(shipped_data, shipped_data / "valid.csv", config, tmp_path / "ckpt", progress=False)
    with pytest.raises(ModelLoadError, match="a residual policy ranks only multiplied with its ranker"):
        load_served_model(tmp_path / "ckpt", load_catalog(shipped_data), Settings(data_dir=shipped_data,
                                                                                  engine="torch"))  # fmt: skip
