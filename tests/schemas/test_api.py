"""The add route's item payload (``schemas.api.NewItem``) against the data set's own ``items.json`` entries."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from recast.dataset import load_item_entries
from schemas.api import NewItem


def test_every_shipped_items_json_entry_is_a_valid_new_item(shipped_data):
    # `recast items add FILE` takes the items.json format, so an entry copied from the shipped file must pass:
    # every one writes its missing categories as "", and two have descriptions over 5,000 characters.
    entries = load_item_entries(shipped_data)
    items = [NewItem(item_id=f"new-{i}", **entry) for i, entry in entries.items()]
    assert len(items) == len(entries) and all(item.categories == [] for item in items)
    assert max(len(item.description) for item in items) > 5000


@pytest.mark.parametrize("categories", ["tools", None, [""], ["x" * 201]])
def test_categories_other_than_a_list_of_names_or_the_empty_string_are_refused(categories):
    with pytest.raises(ValidationError) as refused:
        NewItem(item_id="x", title="A drill", categories=categories)
    assert {e["loc"][0] for e in refused.value.errors()} == {"categories"}


def test_a_description_past_the_bound_is_refused():
    assert NewItem(item_id="x", title="A drill", description="d" * 10_000).description
    with pytest.raises(ValidationError, match="description"):
        NewItem(item_id="x", title="A drill", description="d" * 10_001)
