"""A tiny SFT policy on the real catalog and three disjoint row slices, trained once per session."""

from dataclasses import replace

import pytest

from learner.sft_trainer import train_sft
from recast.sft import preset as sft_preset
from tests.support.data import valid_rows
from tests.support.paths import DATA


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("rl")
    sft_csv = valid_rows(base / "sft.csv", 200)
    rl_csv = valid_rows(base / "rl.csv", 260, start=200)
    eval_csv = valid_rows(base / "eval.csv", 300, start=260)
    sft = train_sft(DATA, sft_csv, replace(sft_preset("tiny"), epochs=2), base / "sft", progress=False).checkpoint
    return sft, rl_csv, eval_csv
