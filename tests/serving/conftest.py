"""Serving fixtures: a small policy trained on the shipped data (tiny preset, about 10 s)."""

from pathlib import Path

import pytest


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
