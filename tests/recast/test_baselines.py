import pytest
import torch

from recast.baselines import PopularityModel, TransitionModel, top_items
from recast.windows import Sequence

# Counted transitions: 0->1 (1), 1->2 (2), 1->3 (1); s2 repeats s1's first windows with weight 0.
SEQS = [
    Sequence("u", (0, 1, 2), (1.0, 1.0, 1.0)),
    Sequence("u", (0, 1, 3), (0.0, 0.0, 1.0)),
    Sequence("v", (1, 2), (1.0, 1.0)),
]


def test_popularity_counts_weighted_targets():
    model = PopularityModel.fit(SEQS, num_items=5)
    assert model.counts.tolist() == [1.0, 2.0, 2.0, 1.0, 0.0]
    assert model.scores([4]).tolist() == pytest.approx([1 / 6, 2 / 6, 2 / 6, 1 / 6, 0.0])


def test_transition_rows_are_normalised_counts():
    model = TransitionModel.fit(SEQS, num_items=5)
    assert model.offsets.tolist() == [0, 1, 3, 3, 3, 3]
    assert model.next_items.tolist() == [1, 2, 3]
    assert model.next_probs.tolist() == pytest.approx([1.0, 2 / 3, 1 / 3])
    assert model.popularity.tolist() == pytest.approx([1 / 6, 2 / 6, 2 / 6, 1 / 6, 0.0])


def test_transition_scores_decay_with_distance():
    model = TransitionModel.fit(SEQS, num_items=5, decay=0.5)
    scores = model.scores([0, 1])  # item 1 weighs 1, item 0 weighs 0.5
    assert scores.tolist() == pytest.approx([0.0, 0.5, 2 / 3, 1 / 3, 0.0], abs=1e-5)
    assert top_items(scores, 5) == [2, 1, 3, 0, 4]  # 0 and 4 only by popularity backfill
    assert model.scores([1, 0]).tolist() == pytest.approx([0.0, 1.0, 1 / 3, 1 / 6, 0.0], abs=1e-5)
    with pytest.raises(ValueError, match="decay"):
        TransitionModel.fit(SEQS, num_items=5, decay=0.0)


def test_backfill_never_outranks_a_transition_score():
    # Item 1 is reached only from the oldest of 30 history items: 0.5**29 ~ 2e-9.
    seqs = [Sequence("u", (0, 1), (1.0, 1.0))] + [Sequence(f"p{i}", (99,), (1.0,)) for i in range(50)]
    model = TransitionModel.fit(seqs, num_items=100)
    scores = model.scores([0] + list(range(50, 79)))
    assert scores[1] > scores[99] > scores[2] >= 0
    assert top_items(scores, 3) == [1, 99, 0]


def test_tensor_round_trip():
    model = TransitionModel.fit(SEQS, num_items=5, decay=0.25)
    again = TransitionModel.from_tensors(model.to_tensors())
    assert again.decay == 0.25
    for name, tensor in model.to_tensors().items():
        assert torch.equal(again.to_tensors()[name], tensor), name
    assert torch.equal(again.scores([0, 1, 2]), model.scores([0, 1, 2]))


def test_top_items_breaks_ties_by_lower_position():
    scores = torch.tensor([1.0, 3.0, 3.0, 0.0, 3.0])
    assert top_items(scores, 3) == [1, 2, 4]
    assert top_items(scores, 10) == [1, 2, 4, 0, 3]


def test_extended_gives_added_items_nothing_and_can_then_learn_them():
    base = TransitionModel.fit([Sequence("u", (0, 1, 2), (1.0, 1.0, 1.0))], 3)
    grown = base.extended(5)
    scores = grown.scores([0])
    assert scores.shape == (5,) and scores[3] == scores[4] == 0
    assert torch.equal(scores[:3], base.scores([0]))
    learnt = grown.update([Sequence("v", (0, 4), (1.0, 1.0))])
    assert learnt.scores([0])[4] > 0
    with pytest.raises(ValueError, match="only grows"):
        base.extended(2)
