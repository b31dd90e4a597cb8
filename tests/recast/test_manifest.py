"""The manifest pins the whole checkpoint directory, and its version pins the whole manifest."""

import json

import pytest
import torch

from recast.baselines import TransitionModel
from recast.catalog import build_catalog
from recast.catalog_version import CatalogVersion
from recast.checkpoint import CheckpointError, load_checkpoint, manifest_version, save_checkpoint, verify_checkpoint
from recast.model import PolicyConfig, SidPolicy
from recast.text import TextModel
from recast.tokenizer import SidTokenizer
from recast.windows import Sequence


def save(out, facts: dict | None = None, transient=(), catalog_version=None):
    sids = {str(i): (f"<a_{i % 3}>", f"<b_{i % 5}>", f"<c_{i % 2}>") for i in range(12)}
    catalog = build_catalog({i: f"item {i}" for i in sids}, sids)
    tokenizer = SidTokenizer.from_catalog(catalog)
    torch.manual_seed(0)
    model = SidPolicy(PolicyConfig(vocab_size=len(tokenizer), n_layer=1, n_head=2, d_model=16, d_ff=32)).eval()
    transition = TransitionModel.fit([Sequence("u", (0, 1, 2), (1.0, 1.0, 1.0))], len(catalog))
    text = TextModel.fit([item.title for item in catalog.items], min_df=1)
    return save_checkpoint(out, model, tokenizer, catalog, transition, text, facts or {"kind": "test"},
                           transient=transient, catalog_version=catalog_version)  # fmt: skip


def test_every_file_of_the_directory_is_hashed(tmp_path):
    path = save(tmp_path / "ckpt")
    listed = set(json.loads((path / "manifest.json").read_text())["sha256"])
    assert listed == {p.name for p in path.iterdir()} - {"manifest.json"}
    assert {"tokenizer_config.json", "generation_config.json"} <= listed  # format 1 left these unpinned


@pytest.mark.parametrize("name", ["tokenizer_config.json", "generation_config.json"])
def test_a_change_to_any_file_is_refused(tmp_path, name):
    path = save(tmp_path / "ckpt")
    (path / name).write_text((path / name).read_text().replace("{", '{"extra": 1, ', 1))
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        verify_checkpoint(path)


def test_a_file_the_manifest_does_not_list_is_refused(tmp_path):
    path = save(tmp_path / "ckpt")
    (path / "special_tokens_map.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not in the manifest: special_tokens_map.json"):
        verify_checkpoint(path)


def test_a_transient_file_is_left_out_and_refused_until_removed(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "train_state.pt").write_bytes(b"resume state")
    path = save(tmp_path / "ckpt", transient=("train_state.pt",))
    with pytest.raises(CheckpointError, match="train_state.pt"):
        verify_checkpoint(path)
    (path / "train_state.pt").unlink()
    verify_checkpoint(path)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not json", "not readable JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"format_version": 1}', "format_version 1, expected 2"),
        ('{"format_version": 2, "sha256": {"../x": "' + "0" * 64 + '"}, "policy_config": {}}', "not a file"),
        ('{"format_version": 2, "sha256": {"a": 1}, "policy_config": {}}', "not a sha256 hex digest"),
        ('{"format_version": 2, "sha256": {"a": "' + "0" * 64 + '"}}', "no policy_config"),
    ],
)
def test_a_malformed_manifest_is_a_reason_not_a_traceback(tmp_path, text, why):
    path = save(tmp_path / "ckpt")
    (path / "manifest.json").write_text(text)
    with pytest.raises(CheckpointError, match=why):
        load_checkpoint(path)


def test_the_version_covers_the_whole_manifest(tmp_path):
    a = load_checkpoint(save(tmp_path / "a", {"kind": "test"}))
    b = load_checkpoint(save(tmp_path / "b", {"kind": "test", "parent": "x"}))  # same weights, another fact
    assert a.manifest["sha256"]["model.safetensors"] == b.manifest["sha256"]["model.safetensors"]
    assert a.version != b.version and a.version == manifest_version(a.manifest) and len(a.version) == 12


def test_the_manifest_names_the_catalog_version_and_an_old_one_means_the_base(tmp_path):
    path = save(tmp_path / "ckpt")
    ckpt = load_checkpoint(path)
    assert ckpt.catalog.version is None and not ckpt.catalog.retired and len(ckpt.catalog.codes) == 12
    assert ckpt.manifest["catalog"] == {"version": None, "digest": ckpt.catalog.digest, "retired": {}}
    # A manifest from before catalog versions loads as its item codes' base version.
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["catalog"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert load_checkpoint(path).catalog == CatalogVersion(ckpt.catalog.codes)


def test_a_checkpoint_trained_under_a_recorded_version_names_it(tmp_path):
    base = load_checkpoint(save(tmp_path / "base")).catalog
    v4 = CatalogVersion(base.codes, {"3": "out_of_stock"}, version=4)
    path = save(tmp_path / "v4", catalog_version=v4)
    assert load_checkpoint(path).catalog == v4
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["catalog"]["retired"] = {}  # hand-edited: the digest no longer matches
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="catalog: catalog digest"):
        load_checkpoint(path, verify=False)
    other = CatalogVersion({**base.codes, "3": "<a_9><b_9><c_9><d_0>"}, version=5)
    with pytest.raises(ValueError, match="not the catalog being saved"):
        save(tmp_path / "other", catalog_version=other)

