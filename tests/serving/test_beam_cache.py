"""The cache of beams answers a repeated prompt with exactly the beam the engine decoded for it, decodes only what
it has not seen, keys the trie a prompt ran over, and forgets the least recently used first."""

from __future__ import annotations

import pytest
import torch

from recast.checkpoint import load_checkpoint
from recast.recommender import Recommender
from serving.engines.beam_cache import CachedEngine
from serving.engines.torch_engine import TorchEngine


class RecordingEngine(TorchEngine):
    """The torch engine, recording the prompts it was asked to decode."""

    def __init__(self, *args):
        super().__init__(*args)
        self.decoded: list[tuple[int, ...]] = []

    def beams(self, prompts, width, live=None):
        self.decoded += [tuple(p) for p in prompts]
        return super().beams(prompts, width, live)


@pytest.fixture(scope="module")
def parts(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    rec = Recommender.from_checkpoint(ckpt, 20)
    return rec, (ckpt.model, rec.trie, ckpt.tokenizer.pad_id)


def test_repeated_prompts_get_the_engines_own_beams_and_only_new_ones_are_decoded(parts):
    rec, args = parts
    plain, inner = TorchEngine(*args), RecordingEngine(*args)
    cached = CachedEngine(inner, capacity=100)
    first = rec.prompts([[1], [2, 3], [1], [4]])  # a repeat within the batch
    second = rec.prompts([[4], [5], [2, 3], [5]])  # two seen, one new (twice)
    for prompts in (first, second):
        got, want = cached.beams(prompts, 20), plain.beams(prompts, 20)
        # Scores agree to float rounding: a batch's padding (its prompts' lengths) moves their last bits.
        assert torch.equal(got.items, want.items) and torch.allclose(got.scores, want.scores, atol=1e-5)
    assert inner.decoded == [tuple(p) for p in (first[0], first[1], first[3], second[1])]
    assert cached.stats() == {"hits": 4, "misses": 4, "entries": 4}
    assert cached.name == "torch"


def test_a_prompt_over_a_smaller_trie_is_another_entry(parts):
    rec, args = parts
    cached = CachedEngine(TorchEngine(*args), capacity=100)
    prompts = rec.prompts([[7], [8]])
    full = cached.beams(prompts, 20)
    gone = int(full.items[0, 0])  # the first prompt's best item, retired for every prompt
    mask = torch.zeros(1, rec.num_items, dtype=torch.bool)
    mask[0, gone] = True
    live = rec.trie.live_nodes(mask).expand(len(prompts), -1)
    retired = cached.beams(prompts, 20, live)
    assert gone not in retired.items.tolist()[0] and gone not in retired.items.tolist()[1]
    assert torch.equal(retired.items, TorchEngine(*args).beams(prompts, 20, live).items)
    assert torch.equal(cached.beams(prompts, 20).items, full.items)  # the whole trie's entries are still there
    # Per-row tries (a request's own removals) are keyed per row: the second prompt keeps its whole trie.
    rows = torch.cat([rec.trie.live_nodes(mask), rec.trie.live_nodes(torch.zeros_like(mask))])
    mixed = cached.beams(prompts, 20, rows)
    assert gone not in mixed.items.tolist()[0] and torch.equal(mixed.items[1], full.items[1])


def test_the_least_recently_used_prompt_goes_first(parts):
    rec, args = parts
    inner = RecordingEngine(*args)
    cached = CachedEngine(inner, capacity=2)
    a, b, c = rec.prompts([[1], [2], [3]])
    for prompt in (a, b, a, c):  # a was used after b, so c pushes b out
        cached.beams([prompt], 20)
    inner.decoded.clear()
    cached.beams([a, b, c], 20)
    assert inner.decoded == [tuple(b)]
    assert cached.stats()["entries"] == 2
    with pytest.raises(ValueError, match="capacity"):
        CachedEngine(inner, capacity=0)


def test_the_width_is_part_of_the_key(parts):
    rec, args = parts
    cached = CachedEngine(TorchEngine(*args), capacity=10)
    prompt = rec.prompts([[1]])
    assert cached.beams(prompt, 20).items.shape == (1, 20)
    assert cached.beams(prompt, 5).items.shape == (1, 5)
