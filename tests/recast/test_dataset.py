import csv
import json

import pytest

from recast.dataset import (
    DatasetError,
    Interaction,
    load_catalog,
    load_interactions,
    write_interactions,
    write_with_sids,
)
from tests.support.data import HEADER


def _load(directory, name="valid.csv"):
    catalog = load_catalog(directory)
    return catalog, load_interactions(directory / name, catalog)


def _edit_row(path, index, **changes):
    """Rewrite the CSV with data row ``index`` (0-based) changed; it sits on line index + 2."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    rows[index].update(changes)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_synthetic_data_set_loads_with_its_own_sizes(make_dataset):
    catalog, rows = _load(make_dataset())
    assert len(catalog) == 40 and len(rows) == 35
    assert len({r.user_id for r in rows}) == 12
    assert rows[0] == Interaction("U0", ("24",), "26")
    assert rows[2].history == ("6", "4", "21") and rows[2].target == "30"
    assert max(len(r.history) for r in rows) == 10


def test_shipped_data_set_loads(shipped_data):
    catalog, rows = _load(shipped_data)
    assert len(rows) == 4532 and len({r.user_id for r in rows}) == 2011
    assert rows[0] == Interaction("A4042", ("3112",), "114")
    assert rows[1].history == ("3437", "642", "642", "2520") and rows[1].target == "1128"


def test_missing_column(make_dataset):
    path = make_dataset() / "valid.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0].replace(",item_id,", ",target_id,") + "".join(lines[1:]))
    with pytest.raises(DatasetError, match=r"valid\.csv:1: missing column\(s\) item_id"):
        _load(path.parent)


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"history_item_id": "[1, 999, 2]"}, "unknown item id(s) ['999']"),
        ({"item_id": "abc"}, "unknown item id(s) ['abc']"),
        ({"history_item_id": "[1, 2"}, "column history_item_id: unparsable list '[1, 2'"),
        ({"history_item_id": "7"}, "column history_item_id: expected a list, got int"),
        ({"item_id": "5"}, "is not item 5's SID"),  # item_sid still names the old target
        ({"item_sid": "<a_1><b_2>x"}, "column item_sid: malformed SID"),
        ({"history_item_sid": "[]"}, "history_item_sid and history_item_id differ in length"),
        ({"user_id": " "}, "empty user_id"),
    ],
)
def test_row_errors_name_file_line_and_problem(make_dataset, changes, problem):
    path = make_dataset() / "valid.csv"
    _edit_row(path, 4, **changes)
    with pytest.raises(DatasetError) as exc:
        _load(path.parent)
    assert str(exc.value).startswith(f"{path}:6: ")
    assert problem in str(exc.value)
    assert exc.value.line == 6


def test_item_sid_disagreeing_with_catalog(make_dataset):
    path = make_dataset() / "valid.csv"
    _edit_row(path, 2, item_sid="<a_0><b_0><c_0>")  # row 2's target is item 30
    with pytest.raises(DatasetError, match=r"valid\.csv:4: column item_sid: SID <a_0><b_0><c_0> is not item 30's SID"):
        _load(path.parent)


def test_malformed_sid_in_sid_index(make_dataset):
    directory = make_dataset()
    path = directory / "sid_index.json"
    sids = json.loads(path.read_text())
    sids["5"] = ["<a_0>", "b_5", "<c_5>"]
    path.write_text(json.dumps(sids, indent=1))
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith('"5":'))
    assert line > 1
    with pytest.raises(DatasetError, match=rf"sid_index\.json:{line}: item '5': malformed SID '<a_0>b_5<c_5>'"):
        load_catalog(directory)


def test_info_txt_disagreeing(make_dataset):
    directory = make_dataset()
    path = directory / "info.txt"
    lines = path.read_text().splitlines(keepends=True)
    lines[6] = "<a_0><b_0><c_0>\tItem 6\t6\n"
    path.write_text("".join(lines))
    with pytest.raises(DatasetError, match=r"info\.txt:7: item 6: SID <a_0><b_0><c_0> disagrees with sid_index\.json"):
        load_catalog(directory)


def test_missing_file_and_invalid_json(make_dataset):
    directory = make_dataset()
    with pytest.raises(DatasetError, match=r"train\.csv: file not found"):
        _load(directory, "train.csv")
    (directory / "items.json").write_text('{\n  "0": {"title": "a"},\n  "1": {"title": }\n}')
    with pytest.raises(DatasetError, match=r"items\.json:3: invalid JSON: Expecting value"):
        load_catalog(directory)
    (directory / "items.json").unlink()
    with pytest.raises(DatasetError, match=r"items\.json: file not found"):
        load_catalog(directory)


def test_write_interactions_copies_the_chosen_rows_verbatim(make_dataset, tmp_path):
    source = make_dataset() / "valid.csv"
    catalog, rows = _load(source.parent)
    keep = {0, 3, 4, 17, 34}
    assert write_interactions(source, tmp_path / "part.csv", keep) == 5
    assert load_interactions(tmp_path / "part.csv", catalog) == [rows[i] for i in sorted(keep)]
    lines = source.read_text().splitlines(keepends=True)
    assert (tmp_path / "part.csv").read_text() == lines[0] + "".join(lines[i + 1] for i in sorted(keep))


def test_write_interactions_positions_skip_blank_lines_like_the_loader(make_dataset, tmp_path):
    source = make_dataset() / "valid.csv"
    catalog, rows = _load(source.parent)
    lines = source.read_text().splitlines(keepends=True)
    source.write_text("".join(lines[:3]) + "\n" + "".join(lines[3:]))  # blank line after data row 1
    assert load_interactions(source, catalog) == rows
    write_interactions(source, tmp_path / "part.csv", {1, 2, 3})
    assert load_interactions(tmp_path / "part.csv", catalog) == rows[1:4]


def test_item_without_title_names_its_line(make_dataset):
    directory = make_dataset()
    path = directory / "items.json"
    items = json.loads(path.read_text())
    items["2"] = {"name": "Item 2"}
    path.write_text(json.dumps(items, indent=2))
    line = path.read_text().splitlines().index('  "2": {') + 1
    with pytest.raises(DatasetError, match=rf"items\.json:{line}: item '2': expected an object with a 'title' string"):
        load_catalog(directory)


def test_write_with_sids_copies_the_data_set_under_other_sids(make_dataset, tmp_path):
    source = make_dataset()
    catalog = load_catalog(source)
    # Other SIDs: one per item, no collisions, levels x/y instead of a/b/c.
    new = {item.item_id: (f"<x_{n % 3}>", f"<y_{n}>") for n, item in enumerate(catalog.items)}
    written = write_with_sids(source, tmp_path / "copy", new)
    copy, rows = _load(tmp_path / "copy")
    assert written == {"valid.csv": 35} and len(rows) == 35
    assert {item.item_id: item.sid for item in copy.items} == new
    assert (tmp_path / "copy" / "items.json").read_bytes() == (source / "items.json").read_bytes()
    assert rows == load_interactions(source / "valid.csv", catalog)  # same rows, users and items
    with (source / "valid.csv").open() as f, (tmp_path / "copy" / "valid.csv").open() as g:
        for before, after in zip(csv.DictReader(f), csv.DictReader(g)):
            assert after["item_sid"] == "".join(new[after["item_id"]])
            unchanged = [k for k in HEADER if "sid" not in k]
            assert [after[k] for k in unchanged] == [before[k] for k in unchanged]
    info = (tmp_path / "copy" / "info.txt").read_text().splitlines()
    assert info[9] == "<x_0><y_9>\tItem 9\t9"


def test_write_with_sids_refuses_a_missing_sid_and_its_own_source(make_dataset, tmp_path):
    source = make_dataset()
    with pytest.raises(DatasetError, match="40 items have no new SID"):
        write_with_sids(source, tmp_path / "copy", {})
    with pytest.raises(DatasetError, match="another directory"):
        write_with_sids(source, source, {})
