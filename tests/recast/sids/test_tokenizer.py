from collections import Counter

import pytest
import torch

from recast.catalog import SID_TOKEN, build_catalog, parse_sid
from recast.sids.store import TokenizerFileError, load_tokenizer, save_tokenizer
from recast.sids.tokenizer import ItemTokenizer, SidConfig
from tests.support.items import item_entries, new_entry

CONFIG = SidConfig(codebook_sizes=(3, 4, 4), dim=8, iterations=30, seed=0)


@pytest.fixture(scope="module")
def tokenizer() -> ItemTokenizer:
    return ItemTokenizer.fit(item_entries(), CONFIG)


def test_fit_is_deterministic_and_ignores_the_mappings_order(tokenizer):
    again = ItemTokenizer.fit(dict(reversed(list(item_entries().items()))), CONFIG)
    assert again.fitted == tokenizer.fitted
    assert all(torch.equal(a, b) for a, b in zip(again.quantizer.codebooks, tokenizer.quantizer.codebooks))
    other_seed = ItemTokenizer.fit(item_entries(), SidConfig(**{**CONFIG.to_dict(), "seed": 1}))
    assert other_seed.fitted != tokenizer.fitted  # the seed matters, so the equality above is not vacuous


def test_codes_are_valid_level_tokens_that_a_catalog_accepts(tokenizer):
    assert set(tokenizer.fitted) == set(item_entries())
    for sid in tokenizer.fitted.values():
        assert parse_sid("".join(sid)) == sid
        for level, token in enumerate(sid):
            letter, index = SID_TOKEN.fullmatch(token).groups()
            assert letter == "abc"[level] and 0 <= int(index) < CONFIG.codebook_sizes[level]
    catalog = build_catalog({i: e["title"] for i, e in item_entries().items()}, tokenizer.fitted)
    assert catalog.disambiguation_level == "d" and len(catalog.by_code) == 30


def test_codes_follow_the_text(tokenizer):
    # Items of one kind share their first code more often than items of different kinds.
    first = {i: sid[0] for i, sid in tokenizer.fitted.items()}
    kinds = [list(range(k * 5, k * 5 + 5)) for k in range(6)]
    same_kind = sum(first[str(a)] == first[str(b)] for ids in kinds for a in ids for b in ids if a < b)
    other = sum(first[str(a)] == first[str(b)] for a in range(30) for b in range(30) if a < b) - same_kind
    assert same_kind / (6 * 10) > 2 * other / (435 - 60)


def test_the_fit_spreads_colliding_items_and_keeps_them_without_spread():
    entries = item_entries()  # "28" and "29" have the same text, so they share every nearest codeword
    spread = ItemTokenizer.fit(entries, CONFIG)
    assert spread.fitted["28"] != spread.fitted["29"]
    # What still collides is the surplus of a prefix holding more items than the last level has codewords (4).
    per_prefix = Counter(sid[:2] for sid in spread.fitted.values())
    per_sid = Counter(spread.fitted.values())
    assert all(per_prefix[sid[:2]] > 4 for sid, n in per_sid.items() if n > 1)
    kept = ItemTokenizer.fit(entries, SidConfig(**{**CONFIG.to_dict(), "spread_collisions": False}))
    assert kept.fitted["28"] == kept.fitted["29"] == kept.encode({"28": entries["28"]})["28"]
    assert kept.fitted == kept.encode(entries)  # without spreading, the fitted SIDs are encode's
    assert len(per_sid) > len(set(kept.fitted.values()))


def test_assign_never_changes_an_existing_code(tokenizer):
    existing = dict(tokenizer.fitted)
    # Existing SIDs need not be this tokenizer's: swap two items' SIDs and add one from elsewhere.
    existing["0"], existing["1"] = existing["1"], existing["0"]
    existing["legacy"] = ("<a_2>", "<b_3>", "<c_0>")
    new = {"100": new_entry("Acme red drill pack", "['red cordless drill']"), "0": new_entry("anything else")}
    out = tokenizer.assign(new, existing)
    assert {i: out[i] for i in existing} == existing  # "0" is known: its SID stays, its new text is ignored
    assert set(out) == set(existing) | {"100"}
    assert out["100"] == tokenizer.encode({"100": new["100"]})["100"]


def test_a_new_item_with_an_existing_items_text_gets_its_sid(tokenizer):
    entries = item_entries()
    unmoved = [i for i in entries if tokenizer.encode({i: entries[i]})[i] == tokenizer.fitted[i]]
    assert len(unmoved) >= 20  # the fit moves colliding items only
    new = {f"copy-{i}": entries[i] for i in unmoved}
    out = tokenizer.assign(new, tokenizer.fitted)
    assert all(out[f"copy-{i}"] == tokenizer.fitted[i] for i in unmoved)


def test_assign_does_not_depend_on_the_other_new_items(tokenizer):
    new = {str(100 + n): new_entry(f"Bolt {c} tape roll", f"['{c} duct tape']") for n, c in enumerate("abcdef")}
    together = tokenizer.assign(new, {})
    assert all(tokenizer.assign({i: e}, {})[i] == together[i] for i, e in new.items())


def test_assign_refuses_existing_sids_of_another_shape(tokenizer):
    with pytest.raises(ValueError, match="levels 'ab'"):
        tokenizer.assign({"x": new_entry("red drill")}, {"1": ("<a_1>", "<b_2>")})
    with pytest.raises(ValueError, match="malformed SID"):
        tokenizer.assign({"x": new_entry("red drill")}, {"1": ("a_1", "<b_2>", "<c_3>")})


def test_config_is_validated():
    with pytest.raises(ValueError, match="levels must be 1..8"):
        SidConfig(codebook_sizes=())
    with pytest.raises(ValueError, match="codebook size"):
        SidConfig(codebook_sizes=(4, 0))
    with pytest.raises(ValueError, match="no items"):
        ItemTokenizer.fit({}, CONFIG)


def test_save_load_round_trip(tokenizer, tmp_path):
    save_tokenizer(tokenizer, tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.config == tokenizer.config and loaded.fitted == tokenizer.fitted
    assert loaded.featurizer.vocab == tokenizer.featurizer.vocab
    assert torch.equal(loaded.featurizer.basis, tokenizer.featurizer.basis)
    entries = {**item_entries(), "new": new_entry("Zenith black glove", "['nitrile glove']")}
    assert loaded.encode(entries) == tokenizer.encode(entries)


def test_a_tampered_or_incomplete_directory_is_refused(tokenizer, tmp_path):
    save_tokenizer(tokenizer, tmp_path / "tok")
    (tmp_path / "tok" / "sid_index.json").write_text("{}")
    with pytest.raises(TokenizerFileError, match="sha256 differs"):
        load_tokenizer(tmp_path / "tok")
    (tmp_path / "tok" / "sid_tokenizer.safetensors").unlink()
    with pytest.raises(TokenizerFileError, match="file not found"):
        load_tokenizer(tmp_path / "tok")
