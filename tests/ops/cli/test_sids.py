"""``recast sids`` as a user runs it: real processes on a small slice of the shipped catalog."""

import json

import pytest

from recast.sids.store import load_tokenizer
from tests.support.cli import recast
from tests.support.data import shipped_subset

SIZES = "8,16,16"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    run = tmp_path_factory.mktemp("sids")
    data = shipped_subset(run / "data", 120)
    summary = json.loads(recast("sids", "fit", "--data", str(data), "--out", str(run / "tok"), "--codebook-size",
                                SIZES, "--write-data", str(run / "own"), "--no-progress").stdout)  # fmt: skip
    return run, data, summary


def test_fit_writes_the_tokenizer_and_the_catalogs_sids(fitted):
    run, data, summary = fitted
    items = json.loads((data / "items.json").read_text())
    index = json.loads((run / "tok" / "sid_index.json").read_text())
    assert set(index) == set(items) and summary["items"] == len(items)
    assert summary["codebook_sizes"] == [8, 16, 16]
    assert all(len(sid) == 3 and [t[1] for t in sid] == ["a", "b", "c"] for sid in index.values())
    assert {tuple(s) for s in index.values()} == {tuple(s) for s in load_tokenizer(run / "tok").fitted.values()}
    assert summary["distinct_sids"] == len({tuple(s) for s in index.values()})


def test_the_data_copy_trains_on_the_new_sids(fitted, tmp_path):
    run, data, _ = fitted
    own = run / "own"
    index = json.loads((run / "tok" / "sid_index.json").read_text())
    assert json.loads((own / "sid_index.json").read_text()) == index
    assert (own / "items.json").read_bytes() == (data / "items.json").read_bytes()
    split = json.loads(recast("split", "--data", str(own), "--out", str(tmp_path / "split")).stdout)
    assert split["train_rows"] + split["heldout_rows"] == 120
    recast("train", "--data", str(own), "--train", str(tmp_path / "split" / "train.csv"), "--preset", "tiny",
           "--epochs", "1", "--out", str(tmp_path / "ckpt"), "--no-progress")  # fmt: skip
    codes = dict(json.loads((tmp_path / "ckpt" / "item_codes.json").read_text()))
    assert all(codes[i][:3] == sid for i, sid in index.items())


def test_default_codebook_sizes_are_what_the_data_sets_own_sids_use(fitted, tmp_path):
    _, data, _ = fitted
    shipped = json.loads((data / "sid_index.json").read_text())
    expected = [len({sid[level] for sid in shipped.values()}) for level in range(3)]
    summary = json.loads(recast("sids", "fit", "--data", str(data), "--out", str(tmp_path / "tok"), "--iterations",
                                "5", "--no-progress").stdout)  # fmt: skip
    assert summary["codebook_sizes"] == expected


def test_assign_codes_new_items_and_changes_no_existing_code(fitted, tmp_path):
    run, data, _ = fitted
    items = json.loads((data / "items.json").read_text())
    tokenizer = load_tokenizer(run / "tok")
    twin = next(i for i in sorted(items) if tokenizer.encode({i: items[i]})[i] == tokenizer.fitted[i])
    known = sorted(items)[0]
    new = {
        "twin-of": items[twin],
        "fresh": {"title": "Cordless drill with two batteries", "description": "", "brand": "Acme", "categories": ""},
        known: {"title": "already in the catalog: keeps its SID"},
    }
    (tmp_path / "new.json").write_text(json.dumps(new))
    out = tmp_path / "merged.json"
    report = json.loads(recast("sids", "assign", "--tokenizer", str(run / "tok"), "--items", str(tmp_path / "new.json"),
                               "--out", str(out)).stdout)  # fmt: skip
    index = json.loads((run / "tok" / "sid_index.json").read_text())
    merged = json.loads(out.read_text())
    assert {i: merged[i] for i in index} == index  # no existing SID changed
    assert set(merged) == set(index) | {"twin-of", "fresh"}
    assert report["kept"] == [known]
    assert report["items"]["twin-of"]["sid"] == "".join(index[twin])
    assert twin in report["items"]["twin-of"]["shares_sid_with"]
    # The twin shares its SID, so the catalog extended with it numbers it after the existing holder(s).
    holders = len(report["items"]["twin-of"]["shares_sid_with"])
    assert report["items"]["twin-of"]["code"] == index[twin] + [f"<d_{holders}>"]
    assert report["items"]["fresh"]["code"][:3] == merged["fresh"]
    assert report["renumbered_if_rebuilt"] == []  # "twin-of" sorts after every numeric id


def test_assign_names_the_items_a_rebuilt_catalog_would_renumber(fitted, tmp_path):
    run, data, _ = fitted
    items = json.loads((data / "items.json").read_text())
    index = json.loads((run / "tok" / "sid_index.json").read_text())
    tokenizer = load_tokenizer(run / "tok")
    twin = next(i for i in sorted(items, key=int) if tokenizer.encode({i: items[i]})[i] == tokenizer.fitted[i]
                and int(i) > 0 and str(int(i) - 1) not in items)  # fmt: skip
    lower = str(int(twin) - 1)  # a free id that sorts before the twin
    (tmp_path / "new.json").write_text(json.dumps({lower: items[twin]}))
    report = json.loads(recast("sids", "assign", "--tokenizer", str(run / "tok"), "--items", str(tmp_path / "new.json"),
                               "--out", str(tmp_path / "merged.json")).stdout)  # fmt: skip
    assert report["items"][lower]["code"] == index[twin] + ["<d_1>"]  # extended: after the existing holder
    assert report["renumbered_if_rebuilt"] == [twin]  # rebuilt: the new lower id would take <d_0>


def test_assign_against_a_data_sets_sids(fitted, tmp_path):
    run, data, _ = fitted
    (tmp_path / "new.json").write_text(json.dumps({"9999": {"title": "Epoxy glue, 2 pack"}}))
    report = json.loads(recast("sids", "assign", "--tokenizer", str(run / "tok"), "--items", str(tmp_path / "new.json"),
                               "--data", str(run / "own")).stdout)  # fmt: skip
    assert list(report["items"]) == ["9999"] and report["kept"] == []


def test_measure_prints_the_comparison(fitted):
    run, data, _ = fitted
    out = recast("sids", "measure", "--data", str(data), "--learnt", str(run / "tok" / "sid_index.json"),
                 "--tokenizer", str(run / "tok"), "--k", "5").stdout  # fmt: skip
    assert "| title+brand tf-idf | learnt | 1 code(s) |" in out and "| learnt tokenizer's | shipped |" in out
    assert "first level, shipped vs learnt: ARI" in out


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["fit", "--codebook-size", "x"], "--codebook-size: expected an integer"),
        (["fit", "--codebook-size", "4,4"], "gives 2 sizes for 3 levels"),
        (["fit", "--levels", "9"], "levels must be 1..8"),
        (["fit", "--write-data", "{data}"], "--write-data must be another directory"),
        (["fit", "--data", "{missing}"], "items.json: file not found"),
        (["assign", "--tokenizer", "{missing}", "--items", "{new}"], "file not found (is"),
        (["assign", "--tokenizer", "{tok}", "--items", "{bad}"], "bad.json:1: invalid JSON"),
        (["assign", "--tokenizer", "{tok}", "--items", "{untitled}"], "expected an object with a 'title' string"),
        (["assign", "--tokenizer", "{tok}", "--items", "{empty}"], "holds no items"),
        (["measure", "--learnt", "{new}"], "lacks"),
    ],
)
def test_bad_input_exits_2_with_the_reason(fitted, tmp_path, args, reason):
    run, data, _ = fitted
    (tmp_path / "new.json").write_text(json.dumps({"x": {"title": "a drill"}}))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "untitled.json").write_text(json.dumps({"x": {"name": "a drill"}}))
    (tmp_path / "empty.json").write_text("{}")
    paths = {"data": data, "missing": tmp_path / "nowhere", "tok": run / "tok", "new": tmp_path / "new.json",
             "bad": tmp_path / "bad.json", "untitled": tmp_path / "untitled.json", "empty": tmp_path / "empty.json"}
    args = [a.format(**{k: str(v) for k, v in paths.items()}) for a in args]
    if args[0] in ("fit", "measure") and "--data" not in args:
        args += ["--data", str(data)]
    if args[0] == "fit":
        args += ["--out", str(tmp_path / "out"), "--no-progress"]
    proc = recast("sids", *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert reason in proc.stderr and "Traceback" not in proc.stderr
