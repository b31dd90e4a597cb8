"""The naive baseline engine (one transformers.generate per request) on a real tiny checkpoint."""

from __future__ import annotations

import math

import pytest
import torch

from recast.beam import score_codes
from recast.checkpoint import load_checkpoint
from recast.dataset import load_catalog, load_interactions
from recast.trie import ItemTrie
from serving.engines.generate_engine import GenerateEngine
from serving.engines.torch_engine import TorchEngine

WIDTH = 10
HISTORIES = 20


@pytest.fixture(scope="module")
def setup(tiny_checkpoint, shipped_data):
    ckpt = load_checkpoint(tiny_checkpoint)
    tok = ckpt.tokenizer
    trie = ItemTrie.build(ckpt.codes, len(tok))
    catalog = load_catalog(shipped_data)
    rows = load_interactions(shipped_data / "valid.csv", catalog)
    # Prompts as the service builds them: [BOS] + the last 10 items' codes.
    prompts = [tok.encode_history(ckpt.codes, [catalog.index[i] for i in r.history][-10:]) for r in rows[:HISTORIES]]
    engine = GenerateEngine(tiny_checkpoint, trie, tok.pad_id)
    yield ckpt, trie, prompts, engine
    engine.close()


def test_items_are_valid_distinct_sorted_and_width_respected(setup):
    ckpt, _, prompts, engine = setup
    result = engine.beams(prompts[:4], WIDTH)
    assert tuple(result.items.shape) == (4, WIDTH) and tuple(result.scores.shape) == (4, WIDTH)
    for row in range(4):
        pairs = result.top(row)
        assert len(pairs) == WIDTH  # the catalog is far larger than the width
        items = [i for i, _ in pairs]
        assert all(0 <= i < ckpt.codes.shape[0] for i in items)
        assert len(set(items)) == len(items)
        scores = [s for _, s in pairs]
        assert scores == sorted(scores, reverse=True)
        assert all(math.isfinite(s) and s <= 0.0 for s in scores)  # sums of log-probabilities


def test_small_width_and_empty_history(setup):
    ckpt, _, _, engine = setup
    result = engine.beams([[ckpt.tokenizer.bos_id]], 3)  # no history: [BOS] alone
    assert tuple(result.items.shape) == (1, 3)
    assert len(result.top(0)) == 3 and all(0 <= i < ckpt.codes.shape[0] for i, _ in result.top(0))


def test_more_beams_than_items_pads_with_minus_one(tiny_checkpoint, setup):
    ckpt, _, prompts, _ = setup
    few = ItemTrie.build(ckpt.codes[:3], len(ckpt.tokenizer))  # a three-item catalog
    engine = GenerateEngine(tiny_checkpoint, few, ckpt.tokenizer.pad_id)
    result = engine.beams(prompts[:1], 5)
    assert sorted(i for i, _ in result.top(0)) == [0, 1, 2]
    assert result.items[0, 3:].tolist() == [-1, -1]
    assert all(s == float("-inf") for s in result.scores[0, 3:].tolist())


def raw_scores(model, prompt: list[int], codes: torch.Tensor) -> torch.Tensor:
    """Teacher-forced sums of *unconstrained* log-probabilities of the items ``codes`` (M, L), with the
    core's own model (not transformers): what generate ranks by, computed independently."""
    seq = torch.cat([torch.tensor(prompt).expand(codes.shape[0], -1), codes], dim=1)  # (M, T + L)
    with torch.no_grad():
        logp = model(seq).log_softmax(-1)  # (M, T + L, V)
    n = len(prompt)
    return logp[:, n - 1 : -1].gather(2, seq[:, n:, None]).squeeze(-1).sum(1)  # (M,)


def test_each_engine_wins_under_its_own_score(setup):
    """The two engines rank by different scores (raw vs renormalised log-probabilities), so on a barely
    trained policy their lists differ (observed on this fixture: top-1 the same on 0 of 20 histories,
    top-10 overlap ~4%; on the 2-epoch tiny preset 14 of 20 and ~58%).
    What must hold: generate's scores are the raw sums, its top-1 beats the torch engine's top-1 under the
    raw score, and the torch engine's top-1 beats generate's under the renormalised one."""
    ckpt, trie, prompts, engine = setup
    pad = ckpt.tokenizer.pad_id
    ours = TorchEngine(ckpt.model, trie, pad).beams(prompts, WIDTH)
    theirs = engine.beams(prompts, WIDTH)
    agree = sum(ours.top(r, 1)[0][0] == theirs.top(r, 1)[0][0] for r in range(len(prompts)))
    print(f"top-1 agreement with the torch engine: {agree}/{len(prompts)}")
    for r, prompt in enumerate(prompts):
        gen_items = [i for i, _ in theirs.top(r)]
        raw = raw_scores(ckpt.model, prompt, ckpt.codes[gen_items])
        torch.testing.assert_close(raw, theirs.scores[r], atol=1e-4, rtol=0)
        gen_top, torch_top = gen_items[0], ours.top(r, 1)[0][0]
        assert raw[0] >= raw_scores(ckpt.model, prompt, ckpt.codes[[torch_top]])[0] - 1e-4
        renorm = score_codes(ckpt.model, trie, [prompt], ckpt.codes[[torch_top, gen_top]][None], pad)[0]
        assert renorm[0] >= renorm[1] - 1e-4


def test_removed_items_never_come_out_of_the_baseline_either(setup):
    """The service removes retired and excluded items in every engine; the baseline walks the live nodes only."""
    ckpt, trie, prompts, engine = setup
    plain = engine.beams(prompts[:2], WIDTH)
    removed = torch.zeros(2, ckpt.codes.shape[0], dtype=torch.bool)
    removed[0, plain.items[0, :3]] = True
    removed[1, plain.items[1, :WIDTH]] = True
    got = engine.beams(prompts[:2], WIDTH, trie.live_nodes(removed))
    for row in range(2):
        items = [i for i, _ in got.top(row)]
        assert len(items) == WIDTH and not removed[row, items].any(), row
