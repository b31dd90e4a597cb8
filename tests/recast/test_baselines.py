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


def test_added_items_stay_marked_until_a_refresh_counts_them_and_survive_a_save():
    base = TransitionModel.fit([Sequence("u", (0, 1, 2), (1.0, 1.0, 1.0))], 3)
    assert not base.added_items().any() and base.extended(3).added is None  # nothing added: nothing marked
    grown = base.extended(5)
    assert grown.added_items().tolist() == [False, False, False, True, True]
    assert torch.equal(TransitionModel.from_tensors(grown.to_tensors()).added_items(), grown.added_items())
    # The night's refresh counts item 4; item 3, still bought by nobody, stays an item added since the counts.
    learnt = grown.update([Sequence("v", (0, 4), (1.0, 1.0))])
    assert learnt.added_items().tolist() == [False, False, False, True, False]
    assert learnt.update([Sequence("w", (3, 1), (1.0, 1.0))]).added is None
    # Kept until counted three times: item 4's one purchase leaves it marked; two more (as target, then as
    # context) clear it. The ranker reads an item with one count and no mark as an old item nobody buys.
    kept = grown.update([Sequence("v", (0, 4), (1.0, 1.0))], mark_until=3)
    assert kept.added_items().tolist() == [False, False, False, True, True]
    assert torch.equal(kept.scores([0]), learnt.scores([0]))  # the counts are the same: only the mark differs
    assert kept.update([Sequence("x", (1, 4), (1.0, 1.0))], mark_until=3).added_items()[4]  # two counts of three
    again = kept.update([Sequence("x", (1, 4), (1.0, 1.0)), Sequence("y", (4, 2), (1.0, 1.0))], mark_until=3)
    assert again.added_items().tolist() == [False, False, False, True, False]


def test_forgetting_hides_items_as_if_added_and_renormalises_the_rest():
    model = TransitionModel.fit(SEQS, num_items=5)
    forgot = model.forgetting(torch.tensor([2]))
    assert forgot.added_items().tolist() == [False, False, True, False, False]
    assert not forgot.has_counts(torch.tensor([2])).item() and forgot.popularity[2] == 0
    # 1 -> 2 (twice) and 1 -> 3 (once) counted: without item 2, 1 -> 3 is all that leaves item 1.
    assert model.scores([1])[3] == pytest.approx(1 / 3, abs=1e-4)
    assert forgot.scores([1])[3] == pytest.approx(1.0, abs=1e-4)
    assert forgot.scores([1])[2] == 0 and forgot.scores([2]).max() < 1e-3  # nothing leaves it: backfill only
    assert forgot.popularity.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="borrowed"):
        borrowed_model().forgetting(torch.tensor([1]))


def test_thinning_keeps_a_few_counts_of_an_item_and_marks_it_added():
    # Item 1 arrives from 0 four times and leaves for 2 (three times) and 3 (once); item 4 never appears.
    seqs = [Sequence(u, (0, 1, 2), (1.0, 1.0, 1.0)) for u in "abc"] + [Sequence("d", (0, 1, 3), (1.0, 1.0, 1.0))]
    model = TransitionModel.fit(seqs, num_items=5)
    thin = model.thinning(torch.tensor([1, 4]), torch.tensor([2, 3]), seed=0)
    pairs, targets = thin._counts("")
    assert pairs[(0, 1)] == 2.0  # two of its four arrivals
    assert sum(w for (s, _), w in pairs.items() if s == 1) == 2.0  # and two departures, drawn from its four
    assert targets[1] == 2.0 and targets[4] == 0.0  # at most what it had
    assert thin.added_items().tolist() == [False, True, False, False, True]
    assert thin.has_counts(torch.tensor([1])).item()  # unlike forgetting, the item keeps counts
    assert model.thinning(torch.tensor([1]), torch.tensor([9]))._counts("")[0] == model._counts("")[0]  # all it had
    again = model.thinning(torch.tensor([1, 4]), torch.tensor([2, 3]), seed=0)
    assert torch.equal(again.next_probs, thin.next_probs)  # seeded


def borrowed_model() -> TransitionModel:
    """Counted: 0->1 (1), 1->2 (2), 1->3 (1); items 4 and 5 are added, 4 borrowing half of item 2's transitions."""
    return TransitionModel.fit(SEQS, num_items=5).extended(6).borrowing(
        torch.tensor([4]), torch.tensor([2]), torch.tensor([0.5])
    )


def test_a_borrower_takes_a_share_of_its_lenders_transitions_and_no_counted_score_moves():
    counted = TransitionModel.fit(SEQS, num_items=5).extended(6)
    model = borrowed_model()
    before, after = counted.scores([1]), model.scores([1])
    assert after[4].item() == pytest.approx(0.5 * 2 / 3)  # half of P(2 | 1)
    assert after[5].item() == pytest.approx(0.0, abs=1e-5)  # added, borrowing nothing
    reached = before > 1e-3
    assert torch.equal(after[reached], before[reached])  # the rows are not renormalised
    assert model.scores([4]).max() < 1e-5  # item 2 leads nowhere, so neither does its borrower
    assert model.popularity[4] == 0  # the counted fields stay counts: the prior is a layer over them
    again = TransitionModel.from_tensors(model.to_tensors())
    assert torch.equal(again.scores([1]), after) and torch.equal(again.borrowers, model.borrowers)


def test_a_refresh_drops_the_prior_of_an_item_it_counts_and_never_counts_the_prior():
    model = borrowed_model()
    day = [Sequence("w", (1, 5), (1.0, 1.0))]  # 5 is counted; 4 is not
    refreshed = model.update(day)
    counted = TransitionModel.fit(SEQS, num_items=5).extended(6).update(day)
    for name in ("offsets", "next_items", "next_probs", "popularity", "row_totals"):
        assert torch.allclose(refreshed.to_tensors()[name], counted.to_tensors()[name]), name
    assert refreshed.borrowers.tolist() == [4]  # still uncounted: keeps its prior
    assert refreshed.scores([1])[4] > 0
    bought = refreshed.update([Sequence("x", (1, 4), (1.0, 1.0))])
    assert bought.borrowers is None  # counted now: counts alone rank it
    assert bought.scores([1])[4].item() == pytest.approx(1 / 5)  # P(4 | 1) from counts alone: 1 of the 5 leaving 1


def test_borrowing_refuses_counted_borrowers_and_borrowing_lenders():
    counted = TransitionModel.fit(SEQS, num_items=5).extended(6)
    with pytest.raises(ValueError, match="counted"):
        counted.borrowing(torch.tensor([2]), torch.tensor([1]), torch.tensor([0.5]))
    with pytest.raises(ValueError, match="cannot lend"):
        counted.borrowing(torch.tensor([4, 5]), torch.tensor([2, 4]), torch.tensor([0.5, 0.5]))
