"""Anchored decoding: a short-prompt policy decoded once per recent history item, the beams mixed."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from recast.anchors import anchor_histories
from recast.checkpoint import load_checkpoint
from recast.recommender import Recommender

HISTORY = list(range(40, 52))  # twelve items


@pytest.fixture(scope="module")
def plain(tiny_checkpoint):
    return replace(Recommender.from_checkpoint(load_checkpoint(tiny_checkpoint), beam_width=20), max_history=1)


def test_the_anchored_beam_is_the_decay_weighted_mixture_of_each_anchors_beam(plain):
    anchored = replace(plain, anchors=3, anchor_decay=0.5)
    per_anchor = plain.policy([HISTORY, HISTORY[:-1], HISTORY[:-2]])
    mix: dict[int, float] = {}
    for row, weight in enumerate((4 / 7, 2 / 7, 1 / 7)):
        for item, score in per_anchor.top(row):
            mix[item] = mix.get(item, 0.0) + weight * math.exp(score)
    want = sorted(mix.items(), key=lambda kv: -kv[1])[:20]
    got = anchored.policy([HISTORY]).top(0)
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([math.log(p) for _, p in want], abs=1e-5)
    # the anchors differ, so the mixture is not any one of them
    assert [i for i, _ in got] != [i for i, _ in per_anchor.top(0)]


def test_a_one_item_history_has_one_anchor_and_ranks_as_the_plain_policy(plain):
    anchored = replace(plain, anchors=3)
    want, got = plain.policy([[7], []]), anchored.policy([[7], []])
    for row in (0, 1):
        assert [i for i, _ in got.top(row)] == [i for i, _ in want.top(row)]
        assert [s for _, s in got.top(row)] == pytest.approx([s for _, s in want.top(row)], abs=1e-5)


def test_the_checkpoint_names_its_decoding(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    assert ckpt.anchors() == (1, 0.5)  # the manifest's SFT config says nothing: the history alone
    config = {**ckpt.manifest["sft_config"], "anchors": 4, "anchor_decay": 0.3}
    rec = Recommender.from_checkpoint(replace(ckpt, manifest={**ckpt.manifest, "sft_config": config}), beam_width=5)
    assert (rec.anchors, rec.anchor_decay) == (4, 0.3)


@pytest.mark.parametrize("anchors, decay", [(0, 0.5), (2, 0.0), (2, 1.5)])
def test_bad_anchor_settings_are_refused(anchors, decay):
    with pytest.raises(ValueError, match="anchors must be|decay must be"):
        anchor_histories([[1, 2]], anchors, decay)
