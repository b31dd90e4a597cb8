import torch

from recast.sids.features import TextFeaturizer, field_text
from tests.support.items import item_entries, new_entry


def _featurizer(dim: int = 6) -> TextFeaturizer:
    return TextFeaturizer.fit(list(item_entries().values()), dim, torch.Generator().manual_seed(0))


def test_field_text_reads_the_shipped_description_lists_and_tolerates_broken_ones():
    assert field_text("['Waxed paper.', 'Pack of 1000']") == "Waxed paper. Pack of 1000"
    assert field_text("['unterminated") == "['unterminated"
    assert field_text(["Tools", "Saws"]) == "Tools Saws" and field_text("") == ""


def test_vocabulary_is_the_words_in_at_least_min_df_items():
    featurizer = _featurizer()
    assert {"drill", "red", "acme", "cordless"} <= set(featurizer.vocab)
    assert "pack" in featurizer.vocab  # in every title: kept, with idf 0
    assert float(featurizer.idf[featurizer.vocab.index("pack")]) == 0.0


def test_a_new_item_is_featurised_with_the_fitted_statistics():
    featurizer = _featurizer()
    entries = item_entries()
    known = featurizer.embed([entries["3"]])
    assert torch.allclose(known, featurizer.embed(list(entries.values()))[3:4], atol=1e-6)
    # A word the fit never saw adds nothing; an item of unseen words only is the zero vector.
    with_unknown = dict(entries["3"], title=entries["3"]["title"] + " zyxwv")
    assert torch.allclose(featurizer.embed([with_unknown]), known, atol=1e-6)
    assert featurizer.embed([new_entry("qqq rrr")]).abs().sum() == 0
    assert torch.allclose(featurizer.embed([entries["5"]]).norm(dim=1), torch.ones(1), atol=1e-5)


def test_similar_text_lands_near():
    featurizer = _featurizer(8)
    v = featurizer.embed([new_entry("Acme red drill pack", "['red cordless drill']"),
                          new_entry("Bolt red drill", "['cordless drill with battery']"),
                          new_entry("Zenith white glove", "['nitrile glove']")])  # fmt: skip
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.3
