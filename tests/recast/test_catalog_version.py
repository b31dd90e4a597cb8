"""Catalog versions: the digest names the contents, and ``extends`` is the rule serving relies on."""

import re

import pytest

from recast.catalog import build_catalog
from recast.catalog_version import (
    CatalogVersion,
    CatalogVersionError,
    base_version,
    extends,
    extension_problem,
    from_manifest,
)

CODES = {"1": "<a_1><b_0>", "2": "<a_2><b_0>", "3": "<a_2><b_1>"}


def test_the_digest_changes_with_any_code_or_state_and_nothing_else():
    v = CatalogVersion(CODES)
    assert v.digest == CatalogVersion(dict(reversed(CODES.items())), version=7).digest  # order and id do not count
    assert v.digest != CatalogVersion({**CODES, "3": "<a_2><b_2>"}).digest
    assert v.digest != CatalogVersion(CODES, {"3": "retired"}).digest
    assert CatalogVersion(CODES, {"3": "retired"}).digest != CatalogVersion(CODES, {"3": "out_of_stock"}).digest


def test_retire_returns_the_next_contents_and_what_was_new():
    v1 = CatalogVersion(CODES, {"1": "out_of_stock"}, version=1)
    v2, newly, already = v1.retire(["3", "1", "3"], "retired")
    assert (newly, already) == (["3"], ["1"])
    assert dict(v2.retired) == {"1": "out_of_stock", "3": "retired"}  # the first reason stays
    assert v2.version is None and extends(v1, v2)
    assert dict(v1.retired) == {"1": "out_of_stock"}  # a version is a value


@pytest.mark.parametrize(("ids", "reason", "message"), [
    (["1", "9", "x"], "retired", "2 unknown item id(s): '9', 'x'"),
    (["1"], "sold", "reason must be one of retired, out_of_stock"),
])  # fmt: skip
def test_retire_refuses_unknown_ids_and_reasons(ids, reason, message):
    with pytest.raises(CatalogVersionError, match=re.escape(message)):
        CatalogVersion(CODES).retire(ids, reason)


def test_extends_allows_new_items_and_new_retirements_only():
    v1 = CatalogVersion(CODES, {"2": "retired"}, version=1)
    assert extends(v1, v1)
    assert extends(v1, CatalogVersion({**CODES, "4": "<a_3><b_0>"}, {"2": "retired", "1": "out_of_stock"}, 2))
    missing = CatalogVersion({"1": CODES["1"], "2": CODES["2"]}, {"2": "retired"}, 2)
    assert extension_problem(v1, missing) == "1 item(s) of version 1 are missing from version 2: '3'"
    recoded = CatalogVersion({**CODES, "1": "<a_9><b_9>"}, {"2": "retired"}, 2)
    assert "item '1' is <a_1><b_0> in version 1 and <a_9><b_9> in version 2" in extension_problem(v1, recoded)
    back = CatalogVersion(CODES, {}, 2)
    assert extension_problem(v1, back) == "item '2' is retired in version 1 but live in version 2"
    reason = CatalogVersion(CODES, {"2": "out_of_stock"}, 2)
    assert extension_problem(v1, reason) == "item '2' is retired in version 1 but out_of_stock in version 2"


def test_a_version_refuses_retired_items_it_does_not_hold():
    with pytest.raises(CatalogVersionError, match="does not hold: '9'"):
        CatalogVersion(CODES, {"9": "retired"})


def test_the_base_version_of_a_catalog_has_its_codes_all_live():
    sids = {"10": ("<a_1>", "<b_2>"), "11": ("<a_1>", "<b_2>"), "12": ("<a_3>", "<b_4>")}
    catalog = build_catalog({i: f"item {i}" for i in sids}, sids)
    base = base_version(catalog)
    assert dict(base.codes) == {"10": "<a_1><b_2><c_0>", "11": "<a_1><b_2><c_1>", "12": "<a_3><b_4><c_0>"}
    assert not base.retired and base.version is None and base.name == f"catalog {base.digest[:12]}"


def test_a_manifest_entry_round_trips_and_an_edited_one_is_refused():
    v3 = CatalogVersion(CODES, {"3": "out_of_stock"}, version=3)
    entry = v3.manifest_entry()
    assert from_manifest(entry, CODES) == v3
    with pytest.raises(CatalogVersionError, match="is not the digest"):
        from_manifest({**entry, "retired": {}}, CODES)  # un-retiring an item by hand changes the contents
    with pytest.raises(CatalogVersionError, match="is not the digest"):
        from_manifest(entry, {**CODES, "3": "<a_7><b_7>"})  # other item codes beside the manifest
    with pytest.raises(CatalogVersionError, match="positive integer"):
        from_manifest({**entry, "version": "3"}, CODES)


def test_add_extends_and_refuses_a_taken_id_or_code():
    from recast.catalog_version import CatalogVersion, CatalogVersionError, extension_problem

    v1 = CatalogVersion({"1": "<a_1><d_0>", "2": "<a_2><d_0>"}, {"2": "retired"}, version=1)
    v2 = v1.add({"3": "<a_1><d_1>"})
    assert extension_problem(v1, v2) is None and v2.state("3") == "live" and v2.retired == v1.retired
    with pytest.raises(CatalogVersionError, match="already in version 1: '2'"):
        v1.add({"2": "<a_9><d_0>"})
    with pytest.raises(CatalogVersionError, match="codes already held: '3'"):
        v1.add({"3": "<a_1><d_0>"})
    with pytest.raises(CatalogVersionError, match="share one"):
        v1.add({"3": "<a_1><d_1>", "4": "<a_1><d_1>"})
