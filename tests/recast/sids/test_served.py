import pytest

from recast.catalog import CatalogError, build_catalog, extend_catalog
from recast.sids.served import ServedCoder
from recast.tokenizer import SidTokenizer
from tests.support.items import COLOURS, KINDS, item_entries, new_entry

KIND_NAMES = list(KINDS)


def shipped_sid(entry: dict) -> tuple[str, ...]:
    """A stand-in for the data set's SIDs: the kind at level a, the colour at level b (28 and 29 collide)."""
    title = entry["title"].lower()
    kind = next(n for n, k in enumerate(KIND_NAMES) if k in title)
    colour = next(n for n, c in enumerate(COLOURS) if c in title)
    return (f"<a_{kind}>", f"<b_{colour}>", "<c_0>")


def coded(entries: dict) -> tuple:
    """(catalog, entries, coder): the entries as a catalog with stand-in shipped SIDs, and its served coder knowing
    the catalog's tokens."""
    catalog = build_catalog({i: e["title"] for i, e in entries.items()},
                            {i: shipped_sid(e) for i, e in entries.items()})  # fmt: skip
    vocab = SidTokenizer.from_catalog(catalog).vocab
    return catalog, entries, ServedCoder.from_catalog(catalog, entries, known_tokens=vocab, dim=16)


@pytest.fixture(scope="module")
def served():
    return coded(item_entries())


def test_a_new_item_gets_the_existing_path_its_text_is_near(served):
    catalog, _, coder = served
    codes = coder.assign({"100": new_entry("Bolt green glue pack", "green epoxy glue adhesive bonds metal")})
    assert codes["100"][:3] == shipped_sid({"title": "green glue"})
    assert codes["100"][3] == "<d_1>"  # d_0 is taken by the existing green glue; d_1 is known (28 and 29)
    assert codes["100"] not in catalog.by_code


def test_an_item_with_an_existing_items_text_collides_and_gets_a_distinct_code(served):
    catalog, entries, coder = served
    codes = coder.assign({"100": dict(entries["7"])})
    assert codes["100"][:3] == catalog.items[catalog.position("7")].sid
    assert codes["100"] != catalog.items[catalog.position("7")].code


def test_a_sid_whose_known_indices_are_taken_sends_the_item_to_the_next_path(served):
    catalog, entries, coder = served
    full = catalog.items[catalog.position("28")].sid  # 28 and 29 hold d_0 and d_1, the largest known
    codes = coder.assign({"100": dict(entries["28"])})
    assert codes["100"][:3] != full and codes["100"][3] in coder.known_tokens
    # The first copy of item 3 takes its SID's d_1; the second finds d_2 unknown and goes to the next path.
    sid = catalog.items[catalog.position("3")].sid
    twice = coder.assign({"100": dict(entries["3"]), "101": dict(entries["3"])})
    assert twice["100"] == sid + ("<d_1>",)
    assert twice["101"][:3] != sid and twice["101"][3] in coder.known_tokens


def test_the_codes_are_those_extend_catalog_gives(served):
    catalog, entries, coder = served
    new = {"100": dict(entries["7"]), "101": new_entry("Acme red saw pack"), "99": dict(entries["7"])}
    codes = coder.assign(new)
    grown = extend_catalog(catalog, {i: e["title"] for i, e in new.items()}, {i: c[:3] for i, c in codes.items()})
    assert {i: grown.items[grown.position(i)].code for i in new} == codes


def test_no_path_with_a_known_free_index_is_a_clear_refusal(served):
    catalog, entries, _ = served
    only_d0 = [t for t in SidTokenizer.from_catalog(catalog).vocab if t != "<d_1>"]
    coder = ServedCoder.from_catalog(catalog, entries, known_tokens=only_d0, dim=16)
    with pytest.raises(CatalogError, match=r"item '100'.*largest is <d_0>"):
        coder.assign({"100": new_entry("Acme red saw pack")})


def test_without_a_vocabulary_any_index_is_allowed(served):
    catalog, entries, _ = served
    coder = ServedCoder.from_catalog(catalog, entries, dim=16)
    assert coder.assign({"100": dict(entries["28"])})["100"] == catalog.items[catalog.position("28")].sid + ("<d_2>",)


@pytest.fixture(scope="module")
def without_green_glue():
    """The catalog without item 12, the green glue: its path (glue, green) is held by no item, nor is (glove, white)
    (item 29 repeats 28's black glove)."""
    return coded({i: e for i, e in item_entries().items() if i != "12"})


def test_unused_paths_give_a_new_item_the_free_path_its_text_is_near_with_d_0(without_green_glue):
    catalog, _, coder = without_green_glue
    green_glue = new_entry("Bolt green glue pack", "green epoxy glue adhesive bonds metal plastic")
    assert coder.assign({"100": green_glue})["100"][3] == "<d_1>"  # the used-path default: the test can fail
    codes = coder.assign({"100": green_glue}, unused_paths=True)
    assert codes["100"] == shipped_sid({"title": "green glue"}) + ("<d_0>",)
    assert codes["100"][:3] not in coder.paths and set(codes["100"]) <= coder.known_tokens


def test_unused_paths_keep_duplicates_on_their_twin_and_fall_back_when_every_path_is_taken(without_green_glue):
    catalog, entries, coder = without_green_glue
    twin = coder.assign({"100": dict(entries["7"])}, unused_paths=True)
    assert twin["100"] == catalog.items[catalog.position("7")].sid + ("<d_1>",)
    # Three green glues: the first takes the free path nearest, the second the other free one, the third finds
    # none free and takes a used path's next known index.
    glue = new_entry("Bolt green glue pack", "green epoxy glue adhesive bonds metal plastic")
    three = coder.assign({"100": glue, "101": dict(glue), "102": dict(glue)}, unused_paths=True)
    assert three["100"] == shipped_sid({"title": "green glue"}) + ("<d_0>",)
    assert three["101"] == shipped_sid({"title": "white glove"}) + ("<d_0>",)
    assert three["102"][:3] in coder.paths and three["102"][3] == "<d_1>"
