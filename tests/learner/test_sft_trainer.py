from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from learner.sft_trainer import STATE_FILE, train_sft
from recast.checkpoint import load_checkpoint
from recast.sft import preset
from tests.support.data import valid_rows
from tests.support.paths import DATA


@pytest.fixture(scope="module")
def small_train(tmp_path_factory) -> Path:
    """The first 150 rows of the shipped interactions (real catalog, small enough for seconds)."""
    return valid_rows(tmp_path_factory.mktemp("data") / "train.csv", 150)


CONFIG = replace(preset("tiny"), epochs=3, dropout=0.1, batch_size=32)


def test_training_writes_a_loadable_checkpoint(small_train, tmp_path):
    result = train_sft(DATA, small_train, CONFIG, tmp_path / "ckpt", progress=False)
    assert result.checkpoint == tmp_path / "ckpt" and len(result.losses) == 3
    assert result.losses[-1] < result.losses[0]
    assert not (tmp_path / "ckpt" / STATE_FILE).exists()  # resume state removed once complete
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.manifest["data"]["rows"] == 150
    assert ckpt.manifest["sft_config"]["epochs"] == 3


def test_same_seed_same_weights_and_resume_is_exact(small_train, tmp_path):
    straight = train_sft(DATA, small_train, CONFIG, tmp_path / "a", progress=False)
    partial = train_sft(DATA, small_train, CONFIG, tmp_path / "b", progress=False, epoch_budget=1)
    assert partial.checkpoint is None and (tmp_path / "b" / STATE_FILE).exists()
    resumed = train_sft(DATA, small_train, CONFIG, tmp_path / "b", progress=False)
    assert resumed.losses == straight.losses
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_another_config_is_refused(small_train, tmp_path):
    train_sft(DATA, small_train, CONFIG, tmp_path / "c", progress=False, epoch_budget=1)
    with pytest.raises(ValueError, match="another configuration"):
        train_sft(DATA, small_train, replace(CONFIG, lr=1e-4), tmp_path / "c", progress=False)
