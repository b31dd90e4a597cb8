import math

import pytest
import torch

from recast.text import TextModel

TITLES = [
    "Loctite epoxy glue",  # 0
    "Gorilla epoxy glue",  # 1
    "Stanley staples",  # 2
    "Stanley staple gun",  # 3
    "Loctite super glue",  # 4
]


def test_similar_titles_score_higher_and_self_similarity_is_left_out():
    model = TextModel.fit(TITLES, min_df=2)  # words in >= 2 titles: loctite, epoxy, glue, stanley
    scores = model.scores([0])
    assert scores[0] == 0.0  # the history item itself
    # Item 1 shares epoxy+glue, item 4 loctite+glue: the same idf mass by construction.
    assert scores[1] == pytest.approx(scores[4]) and scores[1] > 0.0
    assert scores[2] == 0.0 and scores[3] == 0.0  # nothing in common with item 0


def test_scores_by_hand():
    model = TextModel.fit(["a b", "a c", "b c"], min_df=1)
    # idf: every word in 2 of 3 docs -> log(1.5); each row has two equal weights -> 1/sqrt(2) each
    half = 0.5  # cosine of two rows sharing one word
    assert model.scores([0]).tolist() == pytest.approx([0.0, half, half])
    # decay 0.5: most recent item weighs 1, the one before 0.5
    assert model.scores([1, 0]).tolist() == pytest.approx([0.5 * half, half, half + 0.5 * half])


def test_empty_history_and_wordless_items_score_zero():
    model = TextModel.fit(["a b", "a c", "!!!"], min_df=1)
    assert torch.equal(model.scores([]), torch.zeros(3))
    assert model.scores([2]).sum() == 0.0
    assert math.isfinite(model.scores([0, 2]).sum().item())


def test_round_trip():
    model = TextModel.fit(TITLES)
    again = TextModel.from_tensors(model.to_tensors())
    assert torch.equal(again.scores([0, 3]), model.scores([0, 3]))


def test_extend_scores_a_new_item_by_its_words_with_the_fitted_idf():
    fitted = ["epoxy glue metal", "epoxy glue plastic", "duct tape roll", "duct tape silver", "drill bit"]
    model = TextModel.fit(fitted)
    grown = model.extend(fitted, ["epoxy glue wood", "unheard words"])
    assert grown.num_items == 7 and grown.num_words == model.num_words
    scores = grown.scores([0])
    assert scores[5] > 0 and scores[5] > scores[2]  # the new glue reads like the history's glue
    assert scores[6] == 0  # no fitted word: nothing to score by
    assert torch.equal(grown.scores([0])[:5], model.scores([0]))  # the existing items score as before


def test_extend_refuses_texts_the_model_was_not_fitted_on():
    model = TextModel.fit(["epoxy glue metal", "epoxy glue plastic", "duct tape roll", "duct tape silver"])
    with pytest.raises(ValueError, match="not fitted on these 4 texts"):
        model.extend(["epoxy glue metal", "epoxy glue plastic", "duct tape roll", "drill bit"], ["glue"])
