import pytest

from recast.catalog import CatalogError, build_catalog, extend_catalog, parse_sid
from recast.dataset import load_catalog
from tests.support.data import synthetic_sids


def _catalog(sids: dict[str, list[str]]):
    return build_catalog({i: f"Item {i}" for i in sids}, {i: tuple(s) for i, s in sids.items()})


def test_parse_sid_accepts_level_tokens():
    assert parse_sid("<a_1><b_22><c_3>") == ("<a_1>", "<b_22>", "<c_3>")
    assert parse_sid(" <a_7> ") == ("<a_7>",)


@pytest.mark.parametrize("text", ["", "a_1", "<a_1>x<b_2>", "<A_1><b_2>", "<a_1><b_x>", "<a_1> <b_2>"])
def test_parse_sid_refuses_anything_else(text):
    with pytest.raises(CatalogError, match="malformed SID"):
        parse_sid(text)


def test_colliding_items_get_disambiguation_tokens_in_numeric_id_order():
    catalog = _catalog(synthetic_sids())
    code = {item.item_id: item.code for item in catalog.items}
    assert [item.item_id for item in catalog.items] == [str(i) for i in range(40)]
    assert code["9"] == ("<a_4>", "<b_2>", "<c_9>", "<d_0>")
    assert code["10"] == ("<a_4>", "<b_2>", "<c_9>", "<d_1>")  # "10" sorts after "9"
    assert [code[i][-1] for i in ("3", "20", "31")] == ["<d_0>", "<d_1>", "<d_2>"]
    assert code["0"] == ("<a_0>", "<b_0>", "<c_0>", "<d_0>")
    assert catalog.colliding_sids == {
        ("<a_4>", "<b_2>", "<c_9>"): ["9", "10"],
        ("<a_3>", "<b_3>", "<c_3>"): ["3", "20", "31"],
    }
    assert catalog.disambiguation_level == "d" and catalog.code_length == 4


def test_by_code_is_a_bijection_and_build_is_deterministic():
    sids = synthetic_sids()
    catalog = _catalog(sids)
    assert len(catalog.by_code) == len(catalog) == 40
    assert all(catalog.by_code[item.code] == pos for pos, item in enumerate(catalog.items))
    assert all(catalog.index[item.item_id] == pos for pos, item in enumerate(catalog.items))
    reordered = _catalog(dict(reversed(list(sids.items()))))
    assert reordered.items == catalog.items


def test_numeric_ids_sort_numerically_then_text_ids():
    sids = {i: ["<a_1>", f"<b_{n}>"] for n, i in enumerate(["10", "x", "9", "2", "b"])}
    assert [item.item_id for item in _catalog(sids).items] == ["2", "9", "10", "b", "x"]


def test_shipped_catalog(shipped_data):
    catalog = load_catalog(shipped_data)
    assert len(catalog) == 3686
    assert len(catalog.colliding_sids) == 15
    assert len({item.code for item in catalog.items}) == 3686 == len(catalog.by_code)
    assert catalog.items[7].sid == catalog.items[8].sid
    assert (catalog.items[7].code[-1], catalog.items[8].code[-1]) == ("<d_0>", "<d_1>")


@pytest.mark.parametrize(
    "sids, message",
    [
        ({"1": ["<a_1>", "<b_1>"], "2": ["<a_1>"]}, "item 2: SID <a_1> has 1 levels, others have 2"),
        ({"1": ["<a_1>", "<b_1>"], "2": ["<a_2>", "<c_1>"]}, "item 2: level 1 token <c_1> should start with '<b_'"),
        ({"1": ["<a_1>", "<a_2>"]}, "distinct letters"),
    ],
)
def test_build_catalog_refuses_inconsistent_sids(sids, message):
    with pytest.raises(CatalogError, match=message):
        _catalog(sids)


def test_build_catalog_refuses_ids_in_only_one_source():
    with pytest.raises(CatalogError, match=r"2 item ids appear in only one .* \['5', 'z'\]"):
        build_catalog({"1": "a", "5": "b"}, {"1": ("<a_1>",), "z": ("<a_2>",)})
    with pytest.raises(CatalogError, match="empty"):
        build_catalog({}, {})


def test_a_rebuilt_catalog_renumbers_an_item_that_extend_catalog_keeps():
    sids = {"10": ("<a_1>", "<b_1>"), "20": ("<a_1>", "<b_1>"), "30": ("<a_2>", "<b_0>")}
    catalog = _catalog({i: list(s) for i, s in sids.items()})
    assert catalog.items[catalog.index["10"]].code[-1] == "<c_0>"
    new = {"5": ("<a_1>", "<b_1>"), "40": ("<a_2>", "<b_0>"), "x": ("<a_3>", "<b_3>")}
    # Rebuilt from files, new item "5" sorts first in its SID and takes <c_0> from item "10".
    rebuilt = _catalog({i: list(s) for i, s in {**sids, **new}.items()})
    assert rebuilt.items[rebuilt.index["10"]].code[-1] == "<c_1>"
    extended = extend_catalog(catalog, {i: f"Item {i}" for i in new}, new)
    assert extended.items[: len(catalog)] == catalog.items  # same positions, same codes
    code = {item.item_id: item.code for item in extended.items}
    assert code["5"] == ("<a_1>", "<b_1>", "<c_2>")  # the next free index, whatever its id
    assert code["40"] == ("<a_2>", "<b_0>", "<c_1>") and code["x"] == ("<a_3>", "<b_3>", "<c_0>")
    assert [i.item_id for i in extended.items[3:]] == ["5", "40", "x"]
    assert all(extended.by_code[item.code] == pos for pos, item in enumerate(extended.items))
    # Extending again continues after what the first extension gave.
    again = extend_catalog(extended, {"1": "Item 1"}, {"1": ("<a_1>", "<b_1>")})
    assert again.items[-1].code == ("<a_1>", "<b_1>", "<c_3>")


def test_extend_catalog_refuses_known_ids_and_other_shapes():
    catalog = _catalog(synthetic_sids())
    with pytest.raises(CatalogError, match="already in the catalog"):
        extend_catalog(catalog, {"3": "x"}, {"3": ("<a_0>", "<b_0>", "<c_0>")})
    with pytest.raises(CatalogError, match="has 2 levels"):
        extend_catalog(catalog, {"new": "x"}, {"new": ("<a_0>", "<b_0>")})
    with pytest.raises(CatalogError, match="should start with '<b_'"):
        extend_catalog(catalog, {"new": "x"}, {"new": ("<a_0>", "<x_0>", "<c_0>")})
    with pytest.raises(CatalogError, match="only one of items and SIDs"):
        extend_catalog(catalog, {"new": "x"}, {})


def test_append_items_keeps_every_position_and_refuses_a_taken_id_or_code():
    from recast.catalog import Item, append_items

    base = _catalog({"1": ["<a_1>", "<b_1>"], "2": ["<a_1>", "<b_2>"]})
    new = Item("9", "new", "", ("<a_1>", "<b_1>"), ("<a_1>", "<b_1>", "<c_1>"))
    grown = append_items(base, [new])
    assert [i.item_id for i in grown.items] == ["1", "2", "9"] and grown.by_code[new.code] == 2
    with pytest.raises(CatalogError, match="already in the catalog"):
        append_items(grown, [new])
    with pytest.raises(CatalogError, match="is another item's"):
        append_items(base, [Item("8", "x", "", new.sid, base.items[0].code)])
    with pytest.raises(CatalogError, match="not of the catalog's shape"):
        append_items(base, [Item("8", "x", "", ("<a_1>",), ("<a_1>", "<c_5>"))])
