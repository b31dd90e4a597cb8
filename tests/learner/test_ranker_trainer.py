"""The learned ranker's training rows are described by counts that never saw their user."""

from dataclasses import replace

import torch

from learner.ranker_trainer import fit_served_ranker, out_of_fold, user_fold
from learner.sft_trainer import ranker_config
from recast.dataset import Interaction
from recast.ranker import FEATURES, RankerConfig
from recast.sft import SFTConfig, preset
from recast.text import TextModel

TITLES = ["red drill", "red drill bit", "blue saw", "blue saw blade", "green glue", "green glue gun"]
POSITION = {str(i): i for i in range(len(TITLES))}


def users_in_two_folds(config: RankerConfig) -> tuple[str, str]:
    names = [f"user{i}" for i in range(50)]
    first = names[0]
    other = next(n for n in names if user_fold(n, config.folds, config.seed) != user_fold(first, config.folds,
                                                                                          config.seed))  # fmt: skip
    return first, other


def test_a_rows_own_transition_is_not_in_its_features():
    config = RankerConfig(folds=2, per_scorer=3, hidden=4, epochs=2)
    a, b = users_in_two_folds(config)
    # Only user a ever went from item 0 to item 1; user b's rows count 2 -> 3 and 4 -> 5.
    rows = [Interaction(a, ("0",), "1"), Interaction(b, ("2",), "3"), Interaction(b, ("2", "3", "4"), "5")]
    text = TextModel.fit(TITLES, min_df=1)
    features, mask, targets = out_of_fold(rows, POSITION, text, config, source_history=50)
    assert features.shape[0] == 3  # every target is a candidate (by text at least)
    transition = FEATURES.index("transition score, per row")
    text_col = FEATURES.index("text score, per row")
    # Row order: fold by fold. Find a's row by its history flag pattern: the target of a (item 1) is text-nearest.
    folds = [user_fold(r.user_id, config.folds, config.seed) for r in rows]
    order = [i for f in range(config.folds) for i, g in enumerate(folds) if g == f]
    row = order.index(0)
    assert features[row, targets[row], transition] == 0.0  # counted from b's rows only: 0 -> 1 unseen
    assert features[row, targets[row], text_col] == 1.0  # "red drill bit" is the history's nearest title
    # b's 2 -> 3 is counted in b's own rows, and b's rows are described without them too.
    row_b = order.index(1)
    assert features[row_b, targets[row_b], transition] == 0.0


def test_fit_served_ranker_is_repeatable():
    config = RankerConfig(folds=2, per_scorer=3, hidden=4, epochs=3)
    a, b = users_in_two_folds(config)
    rows = [Interaction(a, ("0",), "1"), Interaction(b, ("2",), "3"), Interaction(a, ("4",), "5"),
            Interaction(b, ("0", "1"), "2")]  # fmt: skip
    text = TextModel.fit(TITLES, min_df=1)
    first = fit_served_ranker(rows, POSITION, text, config, source_history=50)
    second = fit_served_ranker(rows, POSITION, text, config, source_history=50)
    assert first.per_scorer == 3 and first.policy_weight == config.policy_weight
    assert all(torch.equal(x, y) for x, y in zip(first.to_tensors().values(), second.to_tensors().values()))


def test_each_fold_hides_a_share_of_the_items_as_added():
    config = RankerConfig(folds=2, per_scorer=6, hidden=4, epochs=1, new_share=0.5)
    a, b = users_in_two_folds(config)
    rows = [Interaction(u, (str(i),), str((i + 1) % 6)) for u in (a, b) for i in range(6)]
    text = TextModel.fit(TITLES, min_df=1)
    features, mask, _ = out_of_fold(rows, POSITION, text, config, source_history=50)
    added = features[:, :, FEATURES.index("added since the counts were made")][mask]
    transition = features[:, :, FEATURES.index("transition score, per row")][mask]
    assert 0 < added.mean() < 1  # half the catalog, hidden per fold
    assert torch.all(transition[added == 1] == 0)  # a hidden item has no counts
    plain, plain_mask, _ = out_of_fold(rows, POSITION, text, replace(config, new_share=0.0), source_history=50)
    assert plain[:, :, FEATURES.index("added since the counts were made")].sum() == 0


def test_a_young_share_thins_more_items_and_leaves_the_hidden_ones_as_they_were():
    from learner.ranker_trainer import added_online
    from recast.baselines import TransitionModel
    from recast.windows import Sequence

    counts = TransitionModel.fit([Sequence(u, tuple(range(10)), (1.0,) * 10) for u in "abcd"], num_items=10)
    config = RankerConfig(new_share=0.2, seed=1)
    hidden = added_online(counts, config, fold=0)
    both = added_online(counts, replace(config, young_share=0.3, young_until=3), fold=0)
    gone = ~hidden.has_counts(torch.arange(10))
    assert gone.sum() == 2 and torch.equal(gone, ~both.has_counts(torch.arange(10)))  # the same two hidden
    young = both.added_items() & ~gone
    assert young.sum() == 3 and both.popularity[young].gt(0).all()  # three more marked, each with counts left
    assert (both.popularity * both.target_total)[young].max() <= 2  # at most young_until - 1 each
    assert added_online(counts, RankerConfig(), fold=0) is counts


def test_a_recipe_names_its_rankers_share_of_items_hidden_as_added():
    assert ranker_config(SFTConfig(ranker=True, ranker_new_share=0.1, seed=3)) == RankerConfig(seed=3, new_share=0.1)
    assert ranker_config(preset("default")).new_share > 0  # the served ranker has seen items bought before counts
