import pytest
import torch

from recast.trie import ROOT, ItemTrie

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
