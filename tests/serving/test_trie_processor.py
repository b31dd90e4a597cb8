"""The trie logits processor without an engine: batch changes in, masked logits out, checked against ItemTrie.

Imports vLLM (the processor subclasses its interface), so these tests fail where vLLM is missing.
"""

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

from recast.trie import ROOT, ItemTrie
from serving.engines.trie_processor import prefix_nodes, processor_for, tail_node

BOS, V = 1, 12
# Four items of depth 3 over tokens 4..11; two share the prefix (4, 6).
CODES = torch.tensor([[4, 6, 8], [4, 6, 9], [4, 7, 10], [5, 7, 11]])


def make(rows: dict[int, list[int]], batch: int):
    """A processor holding ``rows`` (batch index -> all tokens so far, as one prompt) and its masked logits."""
    trie = ItemTrie.build(CODES, V)
    proc = processor_for(trie)(None, torch.device("cpu"), False)
    added = [(index, None, tokens, []) for index, tokens in rows.items()]
    proc.update_state(BatchUpdate(batch_size=batch, removed=[], added=added, moved=[]))
    logits = torch.randn(batch, V)
    return trie, proc, logits.clone(), proc.apply(logits)


def expected_mask(trie: ItemTrie, prefix: list[int]) -> torch.Tensor:
    node = ROOT
    for token in prefix:
        _, nxt = trie.expand(torch.tensor([node]))
        node = int(nxt[0, token])
    allowed, _ = trie.expand(torch.tensor([node]))
    return allowed[0]


def test_every_prefix_length_is_masked_to_the_tries_children():
    history = [BOS, 4, 7, 10, 5, 7, 11]  # BOS + two whole items
    prefixes = [[], [4], [5], [4, 6], [4, 7], [5, 7]]
    trie, _, raw, masked = make({i: history + p for i, p in enumerate(prefixes)}, len(prefixes))
    for row, prefix in enumerate(prefixes):
        allowed = expected_mask(trie, prefix)
        assert torch.equal(masked[row, allowed], raw[row, allowed]), prefix
        assert torch.isneginf(masked[row, ~allowed]).all(), prefix


def test_a_bos_only_prompt_stands_at_the_root():
    trie, _, _, masked = make({0: [BOS]}, 1)
    assert torch.equal(torch.isfinite(masked[0]), expected_mask(trie, []))
    assert torch.isfinite(masked[0]).sum() == 2  # tokens 4 and 5


def test_a_tail_that_leaves_the_trie_gets_an_all_neg_inf_row():
    # (5, 6) is no prefix; (4, 6, 8) then 11 is a whole item followed by a token no item starts with.
    _, _, _, masked = make({0: [BOS, 5, 6], 1: [BOS, 4, 6, 8, 11], 2: [BOS, 4]}, 3)
    assert torch.isneginf(masked[0]).all()
    assert torch.isneginf(masked[1]).all()
    assert torch.isfinite(masked[2]).sum() == 2  # (4,) allows 6 and 7


def test_generated_tokens_count_toward_the_position():
    """vLLM appends sampled tokens to the output list it handed over; the processor reads it live."""
    trie = ItemTrie.build(CODES, V)
    proc = processor_for(trie)(None, torch.device("cpu"), False)
    output: list[int] = []
    proc.update_state(BatchUpdate(batch_size=1, removed=[], added=[(0, None, [BOS], output)], moved=[]))
    output.extend([4, 6])
    masked = proc.apply(torch.zeros(1, V))
    assert torch.isfinite(masked[0]).nonzero().flatten().tolist() == [8, 9]


def test_removed_and_moved_rows_follow_the_batch():
    trie = ItemTrie.build(CODES, V)
    proc = processor_for(trie)(None, torch.device("cpu"), False)
    added = [(0, None, [BOS], []), (1, None, [BOS, 4], []), (2, None, [BOS, 5], [])]
    proc.update_state(BatchUpdate(batch_size=3, removed=[], added=added, moved=[]))
    # Row 0 finishes; compaction moves row 2 into its slot; then rows 0 and 1 swap.
    proc.update_state(
        BatchUpdate(batch_size=2, removed=[0], added=[], moved=[(2, 0, MoveDirectionality.UNIDIRECTIONAL)])
    )
    proc.update_state(BatchUpdate(batch_size=2, removed=[], added=[], moved=[(0, 1, MoveDirectionality.SWAP)]))
    masked = proc.apply(torch.zeros(2, V))
    assert torch.isfinite(masked[0]).nonzero().flatten().tolist() == [6, 7]  # (4,)
    assert torch.isfinite(masked[1]).nonzero().flatten().tolist() == [7]  # (5,)


def test_columns_past_the_trie_vocabulary_are_masked():
    """A model whose output layer is wider than the tokenizer: the extra columns are never tokens."""
    trie = ItemTrie.build(CODES, V)
    proc = processor_for(trie)(None, torch.device("cpu"), False)
    proc.update_state(BatchUpdate(batch_size=1, removed=[], added=[(0, None, [BOS], [])], moved=[]))
    padded = proc.apply(torch.zeros(1, V + 4))
    assert torch.isneginf(padded[0, V:]).all()
    assert torch.equal(torch.isfinite(padded[0, :V]), expected_mask(trie, []))


def test_tail_node_reads_the_partial_item_only():
    trie = ItemTrie.build(CODES, V)
    table = prefix_nodes(trie)
    assert tail_node([BOS], 3, table, trie.dead) == ROOT
    assert tail_node([BOS, 4, 6, 8], 3, table, trie.dead) == ROOT  # a whole item: the next one starts
    assert tail_node([BOS, 4, 6, 8, 4], 3, table, trie.dead) == table[(4,)]
    assert tail_node([BOS, 4, 6, 8, 5, 6], 3, table, trie.dead) == trie.dead
