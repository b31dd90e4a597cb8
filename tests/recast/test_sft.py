import pytest
import torch

from recast.sft import (
    PRESETS,
    SFTConfig,
    batch_loss,
    epoch_batches,
    item_paths,
    learning_rate,
    make_batch,
    make_optimizer,
    preset,
    train_step,
)
from recast.trie import ROOT, ItemTrie
from recast.windows import Sequence

from .helpers import BOS, PAD, random_codes, tiny_policy

CODES = random_codes(20, branching=4, depth=3, seed=0)
VOCAB = 4 + 4 * 3
TRIE = ItemTrie.build(CODES, VOCAB)
SEQS = [Sequence("u1", (0, 5, 7), (1.0, 1.0, 0.0)), Sequence("u2", (3,), (1.0,))]


def test_item_paths_start_at_root_and_follow_the_code():
    paths = item_paths(TRIE, CODES)
    assert (paths[:, 0] == ROOT).all()
    _, next_node = TRIE.expand(torch.tensor([ROOT]))
    assert paths[4, 1].item() == next_node[0, CODES[4, 0]].item()


def test_batch_shifts_targets_and_spreads_item_weights_over_tokens():
    batch = make_batch(SEQS, CODES, item_paths(TRIE, CODES), BOS, PAD, TRIE.dead)
    L = CODES.shape[1]
    assert batch.idx.shape == (2, 3 * L)
    assert batch.idx[0, 0] == BOS and batch.idx[0, 1:].tolist() == CODES[[0, 5, 7]].reshape(-1)[:-1].tolist()
    assert batch.targets[0].tolist() == CODES[[0, 5, 7]].reshape(-1).tolist()
    assert batch.weights[0].tolist() == [1.0] * L + [1.0] * L + [0.0] * L  # the de-duplicated window weighs 0
    assert batch.weights[1].tolist() == [1.0] * L + [0.0] * (2 * L)  # padding weighs 0
    assert (batch.nodes[1, L:] == TRIE.dead).all()


@pytest.mark.parametrize("constrained", [True, False])
def test_a_step_changes_every_parameter_and_training_lowers_the_loss(constrained):
    config = SFTConfig(
        n_layer=2, n_head=2, d_model=16, d_ff=32, dropout=0.0, lr=1e-2, warmup_steps=1, constrained_loss=constrained
    )
    model = tiny_policy(VOCAB, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.div_(25.0)  # back to the normal init scale for training
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = make_optimizer(model, config)
    batch = make_batch(SEQS, CODES, item_paths(TRIE, CODES), BOS, PAD, TRIE.dead)
    first, grad_norm = train_step(model, optimizer, batch, TRIE, config, lr=1e-2)
    assert grad_norm > 0
    for name, p in model.named_parameters():
        assert not torch.equal(p, before[name]), f"{name} did not change"
    for _ in range(30):
        last, _ = train_step(model, optimizer, batch, TRIE, config, lr=1e-2)
    assert last < first * 0.5


def test_learning_rate_warms_up_then_decays_to_the_floor():
    config = SFTConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate(0, 100, config) == pytest.approx(0.1)
    assert learning_rate(9, 100, config) == pytest.approx(1.0)
    assert learning_rate(100, 100, config) == pytest.approx(0.1)
    assert learning_rate(50, 100, config) < learning_rate(20, 100, config)


def test_presets_and_validation():
    assert preset("tiny") is PRESETS["tiny"]
    with pytest.raises(ValueError, match="choose one of"):
        preset("huge")
    with pytest.raises(ValueError, match="epochs"):
        SFTConfig(epochs=0)
    with pytest.raises(ValueError, match="teacher must be one of"):
        SFTConfig(teacher="oracle")
    with pytest.raises(ValueError, match="needs ranker=True"):
        SFTConfig(teacher="ranker")
    assert SFTConfig(teacher="ranker", ranker=True).teacher == "ranker"
    with pytest.raises(ValueError, match="ranker_new_share"):
        SFTConfig(ranker=True, ranker_new_share=1.0)
    one_item = {"short_context": 1, "max_history": 1, "long_windows": False}
    assert SFTConfig(**one_item, later_steps=2).later_steps == 2
    with pytest.raises(ValueError, match="later_steps adds one-item windows"):
        SFTConfig(later_steps=1)  # the long-context preset's prompts
    with pytest.raises(ValueError, match="later_steps and later_weight"):
        SFTConfig(**one_item, later_steps=1, later_weight=-0.1)
    assert SFTConfig(**one_item, distill_weight=0.8, teacher_paths=True).teacher_paths
    with pytest.raises(ValueError, match="teacher_paths draws one-item windows"):
        SFTConfig(distill_weight=0.8, teacher_paths=True)  # the long-context preset's prompts
    with pytest.raises(ValueError, match="teacher_paths draws one-item windows"):
        SFTConfig(**one_item, teacher_paths=True)  # no teacher to draw from
    residual = {**one_item, "teacher": "ranker", "ranker": True, "teacher_history": 10}
    assert SFTConfig(**residual, residual=1.0).residual == 1.0
    with pytest.raises(ValueError, match="residual multiplies"):
        SFTConfig(**residual, residual=1.0, distill_weight=0.8)  # the teacher as a target besides
    with pytest.raises(ValueError, match="residual multiplies"):
        SFTConfig(**{**residual, "teacher_history": 0}, residual=1.0)  # the teacher must read the row
    with pytest.raises(ValueError, match="residual must be"):
        SFTConfig(**residual, residual=-1.0)


def test_epoch_batches_without_a_pool_are_slices_of_one_permutation():
    order = torch.randperm(10, generator=torch.Generator().manual_seed(3)).tolist()
    assert epoch_batches([1] * 10, 4, torch.Generator().manual_seed(3)) == [order[:4], order[4:8], order[8:]]


def test_epoch_batches_with_a_pool_group_similar_lengths_and_keep_every_sequence():
    lengths = [1, 9] * 20
    batches = epoch_batches(lengths, 4, torch.Generator().manual_seed(0), pool=10)
    assert sorted(j for b in batches for j in b) == list(range(40))
    assert all(len({lengths[j] for j in b}) == 1 for b in batches)  # one pool of 20 + 20: every batch is pure


def test_a_fixed_loss_scale_weighs_windows_alike_across_batches():
    model = tiny_policy(VOCAB, seed=0)
    batch = make_batch(SEQS, CODES, item_paths(TRIE, CODES), BOS, PAD, TRIE.dead)
    mean = batch_loss(model, batch, TRIE, True)
    total = batch.weights.sum().item()
    assert torch.allclose(batch_loss(model, batch, TRIE, True, scale=total), mean)
    assert torch.allclose(batch_loss(model, batch, TRIE, True, scale=2 * total), mean / 2)
