import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recast.beam import BeamSearchConfig, beam_search, constrained_log_softmax, score_codes
from recast.trie import ItemTrie

from .helpers import BOS, PAD, prompt_of, random_codes, setup, tiny_policy


@settings(max_examples=15, deadline=None)
@given(num_items=st.integers(2, 40), width=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_outputs_are_distinct_catalog_items_best_first(num_items, width, seed):
    codes, trie, model = setup(num_items=num_items, branching=4, depth=3, seed=seed)
    g = torch.Generator().manual_seed(seed)
    histories = [
        torch.randint(num_items, (int(n),), generator=g).tolist() for n in torch.randint(0, 5, (3,), generator=g)
    ]
    result = beam_search(model, trie, [prompt_of(codes, h) for h in histories], BeamSearchConfig(width), PAD)
    for row in range(len(histories)):
        items = [i for i, _ in result.top(row)]
        assert len(items) == min(width, num_items)  # every valid slot filled, no more
        assert len(set(items)) == len(items)
        assert all(0 <= i < num_items for i in items)
        scores = [s for _, s in result.top(row)]
        assert scores == sorted(scores, reverse=True)
    # Slots beyond the catalog stay empty: item -1 with score -inf, never an invented item.
    assert ((result.items == -1) == torch.isinf(result.scores)).all()


def test_top_item_equals_exhaustive_scoring_and_scores_match():
    codes, trie, model = setup(num_items=60, branching=5, depth=3, seed=3)
    histories = [[], [1], [5, 9, 2], [59, 0, 33, 12]]
    prompts = [prompt_of(codes, h) for h in histories]
    result = beam_search(model, trie, prompts, BeamSearchConfig(60), PAD)
    every = score_codes(model, trie, prompts, codes[None].expand(len(prompts), -1, -1), PAD)  # (B, N)
    for row in range(len(prompts)):
        assert result.items[row, 0].item() == every[row].argmax().item()
        # With width >= catalog size the beam is exhaustive: same scores, same order.
        beam_scores = dict(result.top(row))
        for item in range(60):
            assert math.isclose(beam_scores[item], every[row, item].item(), abs_tol=1e-5)


def test_renormalised_scores_are_a_distribution_over_the_catalog():
    codes, trie, model = setup(num_items=50, branching=4, depth=3, seed=7)
    prompts = [prompt_of(codes, [3, 4]), prompt_of(codes, [])]
    every = score_codes(model, trie, prompts, codes[None].expand(2, -1, -1), PAD)
    assert torch.allclose(every.logsumexp(dim=1), torch.zeros(2), atol=1e-5)


def test_batching_and_left_padding_do_not_change_results():
    codes, trie, model = setup(num_items=40, seed=11)
    histories = [[1, 2, 3, 4, 5, 6], [7], []]
    config = BeamSearchConfig(10)
    batched = beam_search(model, trie, [prompt_of(codes, h) for h in histories], config, PAD)
    for row, h in enumerate(histories):
        alone = beam_search(model, trie, [prompt_of(codes, h)], config, PAD)
        assert alone.items[0].tolist() == batched.items[row].tolist()
        assert torch.allclose(alone.scores[0], batched.scores[row], atol=1e-5)


def test_empty_allowed_set_lets_nothing_through():
    logits = torch.randn(3, 8)
    allowed = torch.zeros(3, 8, dtype=torch.bool)
    allowed[1, 2] = True
    logp = constrained_log_softmax(logits, allowed)
    assert torch.isinf(logp[0]).all() and torch.isinf(logp[2]).all()
    assert logp[1, 2].item() == 0.0 and torch.isinf(logp[1, [0, 1, 3, 4, 5, 6, 7]]).all()
    assert not torch.isnan(logp).any()


class _PreferUnused(torch.nn.Module):
    """An output head that puts +100 on the tokens no item uses."""

    def __init__(self, head: torch.nn.Linear, unused: slice):
        super().__init__()
        self.head, self.unused = head, unused

    def forward(self, x):
        logits = self.head(x)
        logits[..., self.unused] += 100.0
        return logits


def test_unconstrained_tokens_never_win_even_when_the_model_prefers_them():
    codes = random_codes(6, branching=3, depth=2, seed=0)
    vocab = 4 + 3 * 2 + 5  # five extra tokens no item uses
    model = tiny_policy(vocab, seed=1)
    model.lm_head = _PreferUnused(model.lm_head, slice(vocab - 5, vocab))
    trie = ItemTrie.build(codes, vocab)
    logits, _ = model.prefill(torch.tensor([[BOS]]), torch.tensor([[True]]))
    assert logits.argmax().item() >= vocab - 5  # unconstrained, the model would pick an unused token
    result = beam_search(model, trie, [[BOS]], BeamSearchConfig(10), PAD)
    assert sorted(i for i, _ in result.top(0)) == list(range(6))


def test_score_codes_gives_minus_inf_for_codes_outside_the_trie():
    codes, trie, model = setup(num_items=10, seed=2)
    bogus = codes[:1].clone()
    bogus[0, 1] = bogus[0, 0]  # a level-0 token where a level-1 token belongs
    scores = score_codes(model, trie, [[BOS]], torch.stack([codes[:1], bogus], dim=1), PAD)
    assert torch.isfinite(scores[0, 0]) and torch.isinf(scores[0, 1])


def test_a_live_mask_decodes_as_the_trie_of_the_remaining_items():
    """Per row: the items removed for that row never come back, and the rest score exactly as under a trie
    built without them (renormalised over what remains), at every width."""
    codes, trie, model = setup(num_items=40, branching=4, depth=3, seed=5)
    histories = [[1, 2], [3], []]
    prompts = [prompt_of(codes, h) for h in histories]
    removed = torch.zeros(3, 40, dtype=torch.bool)
    removed[0, [0, 5, 7, 39]] = True
    removed[1, :30] = True  # most of the catalog
    live = trie.live_nodes(removed)
    for width in (5, 40):
        got = beam_search(model, trie, prompts, BeamSearchConfig(width), PAD, live=live)
        for row in range(3):
            kept = (~removed[row]).nonzero().squeeze(1)
            subset = ItemTrie.build(codes[kept], trie.vocab_size, items=kept)
            want = beam_search(model, subset, [prompts[row]], BeamSearchConfig(width), PAD)
            assert [i for i, _ in got.top(row)] == [i for i, _ in want.top(0)]
            assert torch.allclose(got.scores[row], want.scores[0], atol=1e-5, equal_nan=True)
            assert not set(i for i, _ in got.top(row)) & set(removed[row].nonzero().squeeze(1).tolist())
    # No mask and an all-live mask decode the same.
    plain = beam_search(model, trie, prompts, BeamSearchConfig(10), PAD)
    all_live = beam_search(model, trie, prompts, BeamSearchConfig(10), PAD,
                           live=trie.live_nodes(torch.zeros(3, 40, dtype=torch.bool)))  # fmt: skip
    assert torch.equal(plain.items, all_live.items) and torch.equal(plain.scores, all_live.scores)
