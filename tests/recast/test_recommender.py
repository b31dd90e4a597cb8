"""The served ranking's two history cuts: the prompt keeps what the policy was trained on, the scorers keep theirs."""

from __future__ import annotations

from dataclasses import replace

import torch

from recast.checkpoint import load_checkpoint
from recast.recommender import Recommender


def test_a_one_item_prompt_leaves_the_scorers_their_ten_items(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    rec = replace(Recommender.from_checkpoint(ckpt, beam_width=5), max_history=1)
    history = list(range(40, 52))  # twelve items
    assert rec.prompts([history]) == [ckpt.tokenizer.encode_history(ckpt.codes, history[-1:])]
    assert torch.equal(rec.transition_scores([history])[0], ckpt.transition.scores(history[-10:]))
    assert torch.equal(rec.text_scores([history])[0], ckpt.text.scores_batch([history[-10:]])[0])
    assert not torch.equal(rec.text_scores([history])[0], ckpt.text.scores_batch([history[-1:]])[0])
