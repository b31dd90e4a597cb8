import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recast.trie import ROOT, ItemTrie, keep_live

from .helpers import SPECIAL, random_codes

CODES = torch.tensor([[4, 6, 8], [4, 6, 9], [5, 7, 8]])


def test_expand_allows_exactly_the_children():
    trie = ItemTrie.build(CODES, vocab_size=10)
    allowed, next_node = trie.expand(torch.tensor([ROOT]))
    assert allowed[0].nonzero().flatten().tolist() == [4, 5]
    node = next_node[0, 4]
    allowed, next_node = trie.expand(node.view(1))
    assert allowed[0].nonzero().flatten().tolist() == [6]
    assert (next_node[0, [0, 1, 2, 3, 4, 5, 7, 8, 9]] == -1).all()


def test_walk_reaches_the_item_at_the_leaf():
    trie = ItemTrie.build(CODES, vocab_size=10)
    for item, code in enumerate(CODES.tolist()):
        node = torch.tensor([ROOT])
        for token in code:
            _, nxt = trie.expand(node)
            node = nxt[:, token]
        assert trie.leaf_item[node].item() == item


def test_dead_node_has_no_children_and_batches_mix():
    trie = ItemTrie.build(CODES, vocab_size=10)
    allowed, next_node = trie.expand(torch.tensor([trie.dead, ROOT, trie.dead]))
    assert not allowed[0].any() and not allowed[2].any()
    assert allowed[1].sum() == 2


def test_duplicate_codes_are_refused():
    with pytest.raises(ValueError, match="same code"):
        ItemTrie.build(torch.tensor([[4, 6], [4, 6]]), vocab_size=10)


def test_subset_trie_keeps_original_positions():
    trie = ItemTrie.build(CODES[[2]], vocab_size=10, items=torch.tensor([2]))
    assert set(trie.leaf_item.tolist()) == {-1, 2}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), share=st.floats(0.0, 1.0))
def test_live_nodes_allow_exactly_what_a_trie_of_the_remaining_items_allows(seed, share):
    """Masking dead edges must equal rebuilding the trie without the removed items, at every reachable prefix."""
    codes = random_codes(40, 4, 3, seed)  # 40 of the 64 codes of 4 x 4 x 4
    V = SPECIAL + 12
    trie = ItemTrie.build(codes, V)
    g = torch.Generator().manual_seed(seed)
    removed = torch.rand(1, 40, generator=g) < share
    kept = (~removed[0]).nonzero().squeeze(1)
    live = trie.live_nodes(removed)
    assert bool(live[0, ROOT]) == bool(len(kept))
    if not len(kept):
        return
    subset = ItemTrie.build(codes[kept], V, items=kept)
    for code in codes[kept].tolist() + codes.tolist():  # every prefix of kept and removed items
        node, sub = torch.tensor([ROOT]), torch.tensor([ROOT])
        for token in code:
            allowed, nxt = trie.expand(node)
            allowed = keep_live(allowed, nxt, live, torch.zeros(1, dtype=torch.long))
            want, sub_nxt = subset.expand(sub)
            assert torch.equal(allowed, want)
            if not want[0, token]:
                break
            node, sub = nxt[:, token], sub_nxt[:, token]
        else:
            assert int(trie.leaf_item[node]) == int(subset.leaf_item[sub]) and not removed[0, trie.leaf_item[node]]
