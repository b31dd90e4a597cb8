from collections import Counter
from dataclasses import replace

import pytest
import torch

from recast.baselines import TransitionModel
from recast.distill import (
    TableConfig,
    TeacherLabels,
    batch_soft_targets,
    label_sequences,
    sample_paths,
    soft_targets,
    teacher_scores,
    teacher_table_sequences,
    top_k_distribution,
)
from recast.losses import soft_token_nll, token_nll
from recast.sft import SFTConfig, item_paths, make_batch, make_optimizer, train_step
from recast.text import TextModel
from recast.trie import ItemTrie
from recast.windows import Sequence

from .helpers import BOS, PAD, random_codes, tiny_policy

V = 30


def test_soft_targets_by_hand():
    # true item [10, 20]; teacher: A = [10, 21] (p .5, shares the first token), B = [11, 22] (p .5)
    true = torch.tensor([[10, 20]])
    teacher = torch.tensor([[[10, 21], [11, 22]]])
    out = soft_targets(true, teacher, torch.tensor([[0.5, 0.5]]), torch.tensor([0.5]), V)
    # level 0: .5 (true) + .25 (A) on 10, .25 (B) on 11
    assert out[0, 0, 10].item() == pytest.approx(0.75) and out[0, 0, 11].item() == pytest.approx(0.25)
    # level 1, given the true first token: only A shares it; (.5 on 20, .25 on 21) / .75
    assert out[0, 1, 20].item() == pytest.approx(2 / 3) and out[0, 1, 21].item() == pytest.approx(1 / 3)
    assert out[0, 1, 22].item() == 0.0
    assert out.sum(-1)[0].tolist() == pytest.approx([1.0, 1.0])


def test_soft_targets_without_teacher_weight_are_the_true_tokens():
    true = torch.tensor([[3, 4], [5, 6]])
    teacher = torch.tensor([[[7, 8]], [[5, 9]]])
    out = soft_targets(true, teacher, torch.tensor([[1.0], [1.0]]), torch.tensor([0.0, 0.0]), V)
    assert torch.equal(out, torch.nn.functional.one_hot(true, V).float())
    # all weight on a teacher that leaves the true path: the level below teaches nothing (not the true token)
    out = soft_targets(true[:1], teacher[:1], torch.tensor([[1.0]]), torch.tensor([1.0]), V)
    assert out[0, 0, 7].item() == 1.0 and out[0, 1].sum().item() == 0.0


def test_soft_targets_along_a_teacher_path_are_the_mixtures_conditionals_there():
    # The same mixture as above (.5 true [10, 20], .25 A [10, 21], .25 B [11, 22]), forced along B, then along A.
    true = torch.tensor([[10, 20]])
    teacher = torch.tensor([[[10, 21], [11, 22]]])
    probs, alpha = torch.tensor([[0.5, 0.5]]), torch.tensor([0.5])
    along_b = soft_targets(true, teacher, probs, alpha, V, path_codes=torch.tensor([[11, 22]]))
    assert torch.equal(along_b[0, 0], soft_targets(true, teacher, probs, alpha, V)[0, 0])  # level 0: no prefix yet
    assert along_b[0, 1, 22].item() == 1.0  # only B starts with 11: the true item is off this path
    along_a = soft_targets(true, teacher, probs, alpha, V, path_codes=torch.tensor([[10, 21]]))
    assert along_a[0, 1, 20].item() == pytest.approx(2 / 3) and along_a[0, 1, 21].item() == pytest.approx(1 / 3)
    # Along the true item itself it is the plain estimate.
    assert torch.equal(soft_targets(true, teacher, probs, alpha, V, path_codes=true),
                       soft_targets(true, teacher, probs, alpha, V))  # fmt: skip


def test_sample_paths_draw_each_labelled_item_from_its_mixture():
    # Row 0 (the second window's last position): the teacher's 7 with .75, 8 with .25; alpha .8.
    labels = TeacherLabels(torch.tensor([[7, 8]]), torch.tensor([[0.75, 0.25]]), ((-1, -1), (-1, 0)))
    windows = [Sequence("u", (1, 2), (0.0, 1.0)), Sequence("v", (3, 4), (0.0, 1.0))]
    generator = torch.Generator().manual_seed(0)
    draws = Counter(sample_paths(windows, labels.rows, labels, 0.8, generator)[1] for _ in range(4000))
    assert set(draws) == {(3, 4), (3, 7), (3, 8)}  # the context is kept; only the labelled item is drawn
    assert draws[(3, 4)] / 4000 == pytest.approx(0.2, abs=0.03)
    assert draws[(3, 7)] / 4000 == pytest.approx(0.6, abs=0.03)
    assert draws[(3, 8)] / 4000 == pytest.approx(0.2, abs=0.03)
    # An unlabelled window keeps its items whatever the draw, and so does a row without teacher mass.
    assert all(sample_paths(windows, labels.rows, labels, 1.0, generator)[0] == (1, 2) for _ in range(50))
    empty = TeacherLabels(torch.tensor([[7, 8]]), torch.zeros(1, 2), labels.rows)
    assert all(sample_paths(windows, empty.rows, empty, 1.0, generator)[1] == (3, 4) for _ in range(50))


def test_batch_soft_targets_follow_the_drawn_paths():
    labels = TeacherLabels(torch.tensor([[1, 2]]), torch.tensor([[0.5, 0.5]]), ((-1, 0),))
    window = [Sequence("u", (3, 4), (0.0, 1.0))]
    drawn = batch_soft_targets(window, labels.rows, labels, CODES, 0.5, VOCAB, paths=[(3, 2)])
    by_hand = soft_targets(CODES[torch.tensor([3, 4])], CODES[torch.tensor([[1, 2], [1, 2]])],
                           torch.tensor([[0.0, 0.0], [0.5, 0.5]]), torch.tensor([0.0, 0.5]), VOCAB,
                           path_codes=CODES[torch.tensor([3, 2])])  # fmt: skip
    assert torch.equal(drawn[0], by_hand.reshape(-1, VOCAB))
    assert not torch.equal(drawn, batch_soft_targets(window, labels.rows, labels, CODES, 0.5, VOCAB))


def test_top_k_distribution_sharpens_and_handles_empty_rows():
    items, probs = top_k_distribution(torch.tensor([[0.1, 0.6, 0.3], [0.0, 0.0, 0.0]]), 2, 2.0)
    assert items[0].tolist() == [1, 2]
    assert probs[0].tolist() == pytest.approx([0.36 / 0.45, 0.09 / 0.45])
    assert probs[1].tolist() == [0.0, 0.0]


def test_soft_nll_with_one_hot_targets_equals_the_hard_loss():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, V, generator=g)
    targets = torch.randint(V, (4, 5), generator=g)
    allowed = torch.rand(4, 5, V, generator=g) > 0.5
    allowed.scatter_(2, targets[..., None], True)
    soft = torch.nn.functional.one_hot(targets, V).float()
    assert torch.allclose(soft_token_nll(logits, soft, allowed), token_nll(logits, targets, allowed))
    assert torch.allclose(soft_token_nll(logits, soft), token_nll(logits, targets))


def test_label_sequences_labels_each_counted_context_once():
    seqs = [Sequence("u", (0, 1, 2), (1.0, 1.0, 1.0)), Sequence("v", (0, 1, 3), (1.0, 1.0, 0.0))]
    seen = []

    def score(contexts):
        seen.extend(contexts)
        return torch.eye(4)[[c[-1] for c in contexts]] + 0.1  # the last item scores highest

    labels = label_sequences(seqs, score, top_k=2, sharpness=1.0)
    assert seen == [(0,), (0, 1)]  # empty contexts and the weight-0 window are not labelled
    assert labels.rows == ((-1, 0, 1), (-1, 0, -1))
    assert labels.items[1, 0].item() == 1 and labels.probs.sum(1).tolist() == pytest.approx([1.0, 1.0])


def test_teacher_scores_mix_transition_and_text():
    seqs = [Sequence("u", (0, 1), (1.0, 1.0))]
    transition = TransitionModel.fit(seqs, 3)
    text = TextModel.fit(["red drill", "red saw", "blue saw"], min_df=1)
    only_transition = teacher_scores(transition, text, [(0,)], 0.0)
    assert only_transition.argmax().item() == 1
    only_text = teacher_scores(transition, text, [(1,)], 1.0)
    assert only_text[0, 2] > 0 and only_text[0, 1] == 0  # "saw" is shared; an item is not its own neighbour


def test_the_teacher_table_sums_the_windows_mixtures_and_the_made_up_pairs():
    # Three items; item 0 ends three windows (twice to 1, once to 2), item 1 one, item 2 none.
    windows = [Sequence(u, (x, y), (0.0, 1.0)) for u, x, y in (("a", 0, 1), ("b", 0, 1), ("c", 0, 2), ("d", 1, 0))]
    scores = torch.tensor([[0.0, 1.0, 3.0], [2.0, 0.0, 1.0], [1.0, 3.0, 0.0]])
    config = TableConfig(alpha=0.8, top_k=2, sharpness=1.0, item_weight=0.5, item_k=1, keep=3)

    def score(contexts):
        return scores[[x for (x,) in contexts]]

    seqs = teacher_table_sequences(windows, score, 3, config)
    got = torch.zeros(3, 3)
    for s in seqs:
        assert s.weights[0] == 0.0
        got[s.items] = s.weights[1]
    # Each window's target, (1 - a) * its true item + a * the teacher's top 2, summed over the windows of its item,
    # plus the item teacher's top 1 at weight 0.5 for every item.
    hard = torch.tensor([[0.0, 2.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    teacher = torch.tensor([[0.0, 0.25, 0.75], [2 / 3, 0.0, 1 / 3], [0.25, 0.75, 0.0]])
    top1 = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    want = 0.2 * hard + 0.8 * hard.sum(1, keepdim=True) * teacher + 0.5 * top1
    assert torch.allclose(got, want)
    # keep=1: each item's best pair alone
    best = teacher_table_sequences(windows, score, 3, replace(config, keep=1))
    assert [s.items for s in best] == [(0, 2), (1, 0), (2, 1)]
    # items: only those rows, in the order asked
    some = teacher_table_sequences(windows, score, 3, replace(config, keep=1), items=[2, 0])
    assert [s.items for s in some] == [(2, 1), (0, 2)]


def test_the_teacher_table_refuses_longer_contexts():
    with pytest.raises(ValueError, match="one-item"):
        teacher_table_sequences([Sequence("u", (0, 1, 2), (0.0, 0.0, 1.0))], lambda c: torch.ones(len(c), 3), 3,
                                TableConfig(alpha=0.5, top_k=1, sharpness=1.0, item_weight=0.0, item_k=1, keep=1))


CODES = random_codes(20, branching=4, depth=3, seed=0)
VOCAB = 4 + 4 * 3
TRIE = ItemTrie.build(CODES, VOCAB)


def test_a_distillation_step_changes_every_parameter():
    seqs = [Sequence("u1", (0, 5, 7), (1.0, 1.0, 1.0)), Sequence("u2", (3, 4), (1.0, 1.0))]
    labels = label_sequences(seqs, lambda c: torch.rand(len(c), 20, generator=torch.Generator().manual_seed(1)), 5, 1.0)
    soft = batch_soft_targets(seqs, labels.rows, labels, CODES, 0.5, VOCAB)
    assert soft.shape == (2, 9, VOCAB) and soft.sum(-1).allclose(torch.ones(2, 9))
    batch = make_batch(seqs, CODES, item_paths(TRIE, CODES), BOS, PAD, TRIE.dead, soft)
    model = tiny_policy(VOCAB, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.div_(25.0)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = SFTConfig(n_layer=2, n_head=2, d_model=16, d_ff=32, dropout=0.0, distill_weight=0.5)
    loss, grad_norm = train_step(model, make_optimizer(model, config), batch, TRIE, config, lr=1e-2)
    assert torch.isfinite(torch.tensor(loss)) and grad_norm > 0
    for name, p in model.named_parameters():
        assert not torch.equal(p, before[name]), f"{name} did not change"


@pytest.mark.parametrize("field, value", [("distill_weight", 1.5), ("teacher_text_weight", -0.1)])
def test_teacher_settings_are_validated(field, value):
    with pytest.raises(ValueError, match=field):
        SFTConfig(**{field: value})


def test_the_teacher_table_needs_a_one_item_policy():
    with pytest.raises(ValueError, match="teacher_table"):
        SFTConfig(teacher_table=-1)
    with pytest.raises(ValueError, match="one-item"):
        SFTConfig(teacher_table=10)  # the long-context prompt
    SFTConfig(teacher_table=10, short_context=1, max_history=1, long_windows=False)


def test_contexts_of_two_items_learn_from_the_teacher_alone_with_a_pair_share():
    # u's third position follows two items: with pair_alpha 1 its target is the teacher's (the true item 7 only
    # where the teacher has it); the second position, after one item, keeps alpha's mixture.
    seqs = [Sequence("u", (0, 5, 7), (0.0, 1.0, 1.0))]
    labels = label_sequences(seqs, lambda c: torch.eye(20)[[9] * len(c)], 1, 1.0)  # the teacher: item 9, always
    soft = batch_soft_targets(seqs, labels.rows, labels, CODES, 0.5, VOCAB, pair_alpha=1.0)
    L = CODES.shape[1]
    after_one, after_two = soft[0, L : 2 * L], soft[0, 2 * L :]
    assert after_one[0, CODES[5, 0]].item() > 0 and after_one[0, CODES[9, 0]].item() > 0
    assert after_two[0, CODES[9, 0]].item() == 1.0  # the first level: the teacher's marginal alone
    assert after_two[0, CODES[7, 0]].item() == 0.0 or CODES[7, 0] == CODES[9, 0]
    # without the pair share both positions mix alike
    mixed = batch_soft_targets(seqs, labels.rows, labels, CODES, 0.5, VOCAB)
    assert mixed[0, 2 * L, CODES[7, 0]].item() > 0


def test_a_pair_policy_needs_one_item_windows_and_a_two_item_prompt():
    with pytest.raises(ValueError, match="pair_context_weight"):
        SFTConfig(pair_context_weight=-1.0)
    with pytest.raises(ValueError, match="two-item prompt"):
        SFTConfig(pair_context_weight=1.0, distill_weight=0.8)  # long windows, ten-item prompt
    with pytest.raises(ValueError, match="two-item prompt"):
        SFTConfig(pair_context_weight=1.0, short_context=1, max_history=2, long_windows=False)  # no teacher
    SFTConfig(pair_context_weight=1.0, short_context=1, max_history=2, long_windows=False, distill_weight=0.8)


def test_teacher_history_is_for_short_context_windows_alone():
    with pytest.raises(ValueError, match="teacher_history"):
        SFTConfig(teacher_history=10)  # long windows: their contexts are already the rows'
    with pytest.raises(ValueError, match="teacher_history"):
        SFTConfig(teacher_history=-1, short_context=1, max_history=1, long_windows=False)
    SFTConfig(teacher_history=10, short_context=1, max_history=1, long_windows=False)
