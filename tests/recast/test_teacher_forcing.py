"""Teacher-forced token log-probabilities: packing, agreement with beam scores, gradients."""

import pytest
import torch

from recast.beam import BeamSearchConfig, beam_search, score_codes
from recast.sft import item_paths
from recast.teacher_forcing import pack, token_logprobs

from .helpers import BOS, PAD, prompt_of, setup


def test_pack_right_pads_and_points_at_the_predicting_positions():
    codes = torch.tensor([[4, 8, 12], [5, 9, 13]])
    idx, positions = pack([[BOS], [BOS, 4, 8, 12]], [1, 0], codes, PAD)
    # L = 3, longest prompt 4 -> T = 4 + 3 - 1 = 6; the last code token is never an input
    assert idx.tolist() == [[BOS, 5, 9, PAD, PAD, PAD], [BOS, 4, 8, 12, 4, 8]]
    # position (len(prompt) - 1) + l predicts code token l: row 0 -> 0, 1, 2; row 1 -> 3, 4, 5
    assert positions.tolist() == [[0, 1, 2], [3, 4, 5]]
    # the targets at those positions are the next inputs (and the last code token)
    full = [[BOS, 5, 9, 13], [BOS, 4, 8, 12, 4, 8, 12]]
    for row in range(2):
        assert [full[row][p + 1] for p in positions[row].tolist()] == codes[[1, 0][row]].tolist()


def test_pack_rejects_empty_prompts_and_mismatched_lengths():
    codes = torch.tensor([[4, 8, 12]])
    with pytest.raises(ValueError):
        pack([[BOS], []], [0, 0], codes, PAD)
    with pytest.raises(ValueError):
        pack([[BOS]], [0, 0], codes, PAD)
    with pytest.raises(ValueError):
        pack([[BOS], [BOS]], [0], codes, PAD)


def test_sums_equal_score_codes_for_prompts_of_different_lengths():
    codes, trie, model = setup(num_items=30, seed=5)
    paths = item_paths(trie, codes)
    histories = [[], [3], [7, 1, 20, 4]]
    prompts = [prompt_of(codes, h) for h in histories]
    every = score_codes(model, trie, prompts, codes[None].expand(len(prompts), -1, -1), PAD)  # (B, N)
    # every (prompt, item) pair in one mixed batch, prompts of 1, 4 and 13 tokens interleaved
    pairs = [(b, i) for i in range(30) for b in range(len(prompts))]
    out = token_logprobs(model, trie, paths, [prompts[b] for b, _ in pairs], [i for _, i in pairs], codes, PAD)
    assert out.shape == (len(pairs), 3)
    assert torch.isfinite(out).all() and (out <= 0).all()
    expected = torch.stack([every[b, i] for b, i in pairs])
    assert torch.allclose(out.sum(-1), expected, atol=1e-5)


def test_result_is_differentiable():
    codes, trie, model = setup(num_items=20, seed=1)
    paths = item_paths(trie, codes)
    prompts = [prompt_of(codes, [2, 5]), prompt_of(codes, [])]
    out = token_logprobs(model, trie, paths, prompts, [4, 11], codes, PAD)
    assert out.requires_grad
    model.zero_grad()
    out.sum().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert grads["lm_head.weight"] is not None and grads["lm_head.weight"].abs().sum() > 0
    assert grads["model.embed_tokens.weight"] is not None and grads["model.embed_tokens.weight"].abs().sum() > 0
    assert all(g is not None for g in grads.values())
    assert sum(g.abs().sum().item() for g in grads.values()) > 0
    with torch.no_grad():
        assert not token_logprobs(model, trie, paths, prompts, [4, 11], codes, PAD).requires_grad


def test_beam_scores_equal_teacher_forced_sums():
    codes, trie, model = setup(num_items=40, seed=9)
    paths = item_paths(trie, codes)
    histories = [[0, 1, 2, 3, 4], [], [17]]
    prompts = [prompt_of(codes, h) for h in histories]
    result = beam_search(model, trie, prompts, BeamSearchConfig(8), PAD)
    rows = [(b, i, s) for b in range(len(prompts)) for i, s in result.top(b)]
    assert len(rows) == 3 * 8
    out = token_logprobs(model, trie, paths, [prompts[b] for b, _, _ in rows], [i for _, i, _ in rows], codes, PAD)
    assert torch.allclose(out.sum(-1), torch.tensor([s for _, _, s in rows]), atol=1e-4)


def test_single_pair_and_item_order_do_not_matter():
    codes, trie, model = setup(num_items=25, seed=4)
    paths = item_paths(trie, codes)
    prompts = [prompt_of(codes, [1, 2]), prompt_of(codes, [9])]
    both = token_logprobs(model, trie, paths, prompts, [3, 17], codes, PAD)
    swapped = token_logprobs(model, trie, paths, prompts[::-1], [17, 3], codes, PAD)
    alone = token_logprobs(model, trie, paths, prompts[1:], [17], codes, PAD)
    assert torch.allclose(both, swapped.flip(0), atol=1e-5)
    assert torch.allclose(both[1:], alone, atol=1e-5)
