"""A tiny SFT policy on the real catalog and three disjoint row slices, trained once per session."""

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from learner.sft_trainer import train_sft
from recast.sft import preset as sft_preset

DATA = Path(__file__).resolve().parents[3] / "data" / "amazon18-industrial"


def slice_rows(src: Path, dst: Path, start: int, stop: int) -> Path:
    with src.open() as f, dst.open("w", newline="") as out:
        rows = list(csv.reader(f))
        csv.writer(out, lineterminator="\n").writerows([rows[0], *rows[1 + start : 1 + stop]])
    return dst


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("rl")
    sft_csv = slice_rows(DATA / "valid.csv", base / "sft.csv", 0, 200)
    rl_csv = slice_rows(DATA / "valid.csv", base / "rl.csv", 200, 260)
    eval_csv = slice_rows(DATA / "valid.csv", base / "eval.csv", 260, 300)
    sft = train_sft(DATA, sft_csv, replace(sft_preset("tiny"), epochs=2), base / "sft", progress=False).checkpoint
    return sft, rl_csv, eval_csv
