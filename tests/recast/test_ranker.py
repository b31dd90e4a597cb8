import pytest
import torch

from recast.baselines import TransitionModel
from recast.fusion import fuse_ranked
from recast.ranker import FEATURES, Ranker, RankerConfig, candidates, fit_ranker
from recast.text import TextModel
from recast.windows import Sequence

TITLES = ["red drill", "red drill bit", "blue saw", "blue saw blade", "green glue", "green glue gun", "tape", "tape"]


@pytest.fixture
def scorers():
    seqs = [Sequence("u", (0, 1, 2, 3), (1.0,) * 4), Sequence("v", (4, 5, 0, 1), (1.0,) * 4)]
    return TransitionModel.fit(seqs, len(TITLES)), TextModel.fit(TITLES, min_df=1)


def column(name: str) -> int:
    return FEATURES.index(name)


def test_candidates_are_distinct_padded_last_and_described(scorers):
    transition, text = scorers
    histories = [[0, 4], [2], []]
    cands = candidates(histories, transition, text, per_scorer=3)
    assert cands.features.shape == (3, 9, len(FEATURES))
    for row in range(3):
        items = cands.items[row].tolist()
        real = [i for i in items if i >= 0]
        assert len(real) == len(set(real)) and items == real + [-1] * (len(items) - len(real))
        assert torch.all(cands.features[row][cands.items[row] < 0] == 0)
    # The history flag and length read the row's own history.
    row0 = cands.items[0].tolist()
    for i, item in enumerate(row0):
        if item >= 0:
            assert cands.features[0, i, column("in the history")] == float(item in (0, 4))
            assert cands.features[0, i, column("history length")] == 2.0
    # The counts' best successor of item 2 leads the transition order with score 1.
    best = cands.items[1].tolist().index(3)
    assert cands.features[1, best, column("transition score, per row")] == 1.0
    assert cands.features[1, best, column("log(1 + rank) by transition")] == 0.0


def test_candidates_reuse_precomputed_scores(scorers):
    transition, text = scorers
    histories = [[0, 4], [2]]
    given = candidates(histories, transition, text, 3, torch.stack([transition.scores(h) for h in histories]),
                       text.scores_batch(histories))  # fmt: skip
    computed = candidates(histories, transition, text, 3)
    assert torch.equal(given.items, computed.items) and torch.equal(given.features, computed.features)


def test_candidates_add_the_extra_items_once_each(scorers):
    transition, text = scorers
    histories = [[0, 4], [2]]
    base = candidates(histories, transition, text, per_scorer=1)
    extra = torch.tensor([[7, 6, 7, -1], [-1, -1, -1, -1]])  # a repeat, and a row with none
    cands = candidates(histories, transition, text, per_scorer=1, extra=extra)
    for row in range(2):
        real = [i for i in cands.items[row].tolist() if i >= 0]
        wanted = {i for i in base.items[row].tolist() if i >= 0} | {i for i in extra[row].tolist() if i >= 0}
        assert len(real) == len(set(real)) and set(real) == wanted
        assert cands.items[row].tolist() == real + [-1] * (cands.items.shape[1] - len(real))
    # An extra item is described as any candidate is: the scorers' scores of it.
    seven = cands.items[0].tolist().index(7)
    assert cands.features[0, seven, column("text score")] == pytest.approx(text.scores_batch([[0, 4]])[0, 7].item())


def synthetic(rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of 6 candidates (the last one padding) whose target is the candidate with the highest 'text score'
    plus noise: a signal a ranker can learn."""
    g = torch.Generator().manual_seed(seed)
    features = torch.rand(rows, 6, len(FEATURES), generator=g)
    mask = torch.ones(rows, 6, dtype=torch.bool)
    mask[:, -1] = False
    features[:, -1] = 0.0
    signal = features[:, :, column("text score")] + 0.1 * torch.rand(rows, 6, generator=g)
    targets = signal.masked_fill(~mask, -1.0).argmax(dim=1)
    return features, mask, targets


def test_fit_ranker_learns_a_signal_and_is_deterministic():
    config = RankerConfig(hidden=8, epochs=30, batch_size=64)
    ranker = fit_ranker(*synthetic(600, seed=0), config)
    features, mask, targets = synthetic(300, seed=1)
    scores = ranker.scores(features).masked_fill(~mask, float("-inf"))
    assert (scores.argmax(dim=1) == targets).float().mean() > 0.8  # chance is 0.2
    again = fit_ranker(*synthetic(600, seed=0), config)
    assert all(torch.equal(a, b) for a, b in zip(ranker.to_tensors().values(), again.to_tensors().values()))


def test_ranker_round_trips_reads_older_features_and_refuses_unknown_ones():
    ranker = fit_ranker(*synthetic(50, seed=0), RankerConfig(hidden=4, epochs=1, policy_weight=0.3))
    back = Ranker.from_tensors(ranker.to_tensors())
    assert back.per_scorer == ranker.per_scorer and back.policy_weight == pytest.approx(0.3)
    assert all(torch.equal(a, b) for a, b in zip(ranker.to_tensors().values(), back.to_tensors().values()))
    # A ranker saved before the last feature was appended scores today's candidates by the features it knew.
    features = synthetic(5, seed=1)[0]
    older = ranker.to_tensors()
    for name in ("w1", "mean", "std"):
        older[name] = older[name][..., :-1]
    assert torch.allclose(Ranker.from_tensors(older).scores(features), Ranker.from_tensors(older).scores(
        features[..., :-1]))  # fmt: skip
    wider = ranker.to_tensors()
    wider["w1"], wider["mean"], wider["std"] = (torch.cat((wider[n], wider[n][..., :1]), dim=-1)
                                                for n in ("w1", "mean", "std"))  # fmt: skip
    with pytest.raises(ValueError, match="features"):
        Ranker.from_tensors(wider)
    # Trained in memory on more columns than FEATURES (an experiment stacking its own), it scores them all.
    features, mask, targets = synthetic(50, seed=0)
    wide = torch.cat((features, features[..., :2]), dim=-1)
    stacked = fit_ranker(wide, mask, targets, RankerConfig(hidden=4, epochs=1))
    assert stacked.scores(torch.rand(3, 6, len(FEATURES) + 2)).shape == (3, 6)


def test_no_row_with_its_target_is_an_error():
    with pytest.raises(ValueError, match="nothing to train"):
        fit_ranker(torch.zeros(0, 6, len(FEATURES)), torch.zeros(0, 6, dtype=torch.bool),
                   torch.zeros(0, dtype=torch.long), RankerConfig())  # fmt: skip


@pytest.mark.parametrize("field, value", [("hidden", 0), ("folds", 1), ("lr", 0.0), ("policy_weight", 1.5)])
def test_invalid_config_raises(field, value):
    with pytest.raises(ValueError, match=field):
        RankerConfig(**{field: value})


def test_probabilities_cover_the_candidates_only(scorers):
    transition, text = scorers
    ranker = fit_ranker(*synthetic(50, seed=0), RankerConfig(hidden=4, epochs=1))
    cands = candidates([[0, 4], [2]], transition, text, per_scorer=2)
    probs = ranker.probabilities(cands, len(TITLES))
    assert torch.allclose(probs.sum(dim=1), torch.ones(2))
    for row in range(2):
        outside = torch.ones(len(TITLES), dtype=torch.bool)
        outside[cands.items[row][cands.mask[row]]] = False
        assert torch.all(probs[row][outside] == 0)


def test_fuse_ranked_blends_the_beam_by_the_policy_weight():
    ranked = torch.tensor([[0.1, 0.6, 0.3, 0.0, 0.0]])
    items, scores = torch.tensor([[4, 3, -1]]), torch.tensor([[0.0, -1.0, float("-inf")]])
    assert [i for i, _ in fuse_ranked(items, scores, ranked, 3, 0.0, 2.0)[0]] == [1, 2, 0]
    assert [i for i, _ in fuse_ranked(items, scores, ranked, 2, 1.0, 2.0)[0]] == [4, 3]
    removed = torch.tensor([[False, True, False, False, True]])
    listed = [i for i, _ in fuse_ranked(items, scores, ranked, 5, 0.5, 2.0, removed)[0]]
    assert 1 not in listed and 4 not in listed and len(listed) == 3
    with pytest.raises(ValueError, match="policy_weight"):
        fuse_ranked(items, scores, ranked, 3, -0.1, 2.0)


def test_candidates_say_which_items_were_added_since_the_counts(scorers):
    transition, text = scorers
    grown = transition.forgetting(torch.tensor([5]))
    cands = candidates([[4]], grown, text, per_scorer=3)
    added = cands.features[0, :, column("added since the counts were made")]
    assert added[cands.items[0] == 5].tolist() == [1.0]  # "green glue gun": the text's nearest to "green glue"
    assert added[(cands.items[0] != 5) & cands.mask[0]].sum() == 0


def test_a_feature_that_never_varied_in_training_has_no_weight():
    features, mask, targets = synthetic(100, seed=0)
    flag = column("added since the counts were made")
    features[:, :, flag] = 0.0  # a ranker fitted with no item hidden as added
    ranker = fit_ranker(features, mask, targets, RankerConfig(hidden=4, epochs=2))
    assert torch.all(ranker.w1[:, flag] == 0)
    marked = features.clone()
    marked[:, :, flag] = 1.0  # served with items added online: their scores do not move at random
    assert torch.allclose(ranker.scores(marked), ranker.scores(features))
