import json

import pytest
import torch

from recast.baselines import TransitionModel
from recast.catalog import build_catalog
from recast.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from recast.model import PolicyConfig, SidPolicy
from recast.text import TextModel
from recast.tokenizer import SidTokenizer
from recast.windows import Sequence


@pytest.fixture
def saved(tmp_path):
    sids = {str(i): (f"<a_{i % 3}>", f"<b_{i % 5}>", f"<c_{i % 2}>") for i in range(12)}  # 12 items, some collide
    catalog = build_catalog({i: f"item {i}" for i in sids}, sids)
    tokenizer = SidTokenizer.from_catalog(catalog)
    torch.manual_seed(0)
    model = SidPolicy(PolicyConfig(vocab_size=len(tokenizer), n_layer=2, n_head=2, d_model=16, d_ff=32)).eval()
    transition = TransitionModel.fit([Sequence("u", (0, 1, 2), (1.0, 1.0, 1.0))], len(catalog))
    text = TextModel.fit([item.title for item in catalog.items], min_df=1)
    save_checkpoint(tmp_path / "ckpt", model, tokenizer, catalog, transition, text, {"kind": "test"})
    return tmp_path / "ckpt", model, tokenizer, catalog


def test_round_trip_keeps_weights_codes_and_manifest(saved):
    path, model, tokenizer, catalog = saved
    ckpt = load_checkpoint(path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(ckpt.model.state_dict()[name], tensor)
    assert ckpt.item_ids == [item.item_id for item in catalog.items]
    assert torch.equal(ckpt.codes, tokenizer.item_codes(catalog))
    assert ckpt.manifest["kind"] == "test" and len(ckpt.version) == 12
    text = TextModel.fit([item.title for item in catalog.items], min_df=1)
    assert torch.equal(ckpt.text.scores([1, 2]), text.scores([1, 2]))


def test_transformers_llama_gives_the_same_logits(saved):
    from transformers import AutoModelForCausalLM

    path, model, tokenizer, catalog = saved
    hf = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    idx = torch.tensor([[tokenizer.bos_id] + tokenizer.item_codes(catalog)[[3, 7, 1]].reshape(-1).tolist()])
    with torch.no_grad():
        ours = model(idx)
        theirs = hf(input_ids=idx).logits
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def test_prefill_and_decode_match_the_full_forward(saved):
    path, model, tokenizer, catalog = saved
    codes = tokenizer.item_codes(catalog)
    seq = [tokenizer.bos_id] + codes[[2, 5]].reshape(-1).tolist()
    full = model(torch.tensor([seq]))[0]  # (T, V)
    prompt, rest = seq[:5], seq[5:]
    # Left padding in front of the prompt must not change anything.
    idx = torch.tensor([[tokenizer.pad_id] * 3 + prompt])
    valid = torch.tensor([[False] * 3 + [True] * 5])
    with torch.no_grad():
        logits, prefix = model.prefill(idx, valid)
        assert torch.allclose(logits[0], full[4], atol=1e-5)
        steps = None
        for i, token in enumerate(rest[:-1]):
            step_logits, steps = model.decode(torch.tensor([[token]]), prefix, steps)
            assert torch.allclose(step_logits[0, 0], full[5 + i], atol=1e-5)


def test_hf_tokenizer_encodes_sid_text_to_the_same_ids(saved):
    from transformers import AutoTokenizer

    path, _, tokenizer, catalog = saved
    hf = AutoTokenizer.from_pretrained(str(path))
    code = catalog.items[4].code
    expected = [tokenizer.token_id(t) for t in code]
    assert hf("".join(code), add_special_tokens=False)["input_ids"] == expected
    assert hf(" ".join(code), add_special_tokens=False)["input_ids"] == expected
    assert hf.convert_tokens_to_ids("[BOS]") == tokenizer.bos_id


def test_generation_defaults_never_sample(saved):
    config = json.loads((saved[0] / "generation_config.json").read_text())
    assert config["do_sample"] is False


def test_tampered_weights_are_refused(saved):
    path = saved[0]
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)


def test_missing_manifest_is_refused(saved):
    (saved[0] / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest"):
        load_checkpoint(saved[0])


def test_a_learned_ranker_is_saved_verified_and_loaded(saved, tmp_path):
    from recast.ranker import FEATURES, RankerConfig, fit_ranker

    path, model, tokenizer, catalog = saved
    assert load_checkpoint(path).ranker is None  # saved without one: the fixed mix serves
    g = torch.Generator().manual_seed(0)
    features, mask = torch.rand(20, 4, len(FEATURES), generator=g), torch.ones(20, 4, dtype=torch.bool)
    ranker = fit_ranker(features, mask, torch.zeros(20, dtype=torch.long), RankerConfig(hidden=4, epochs=2))
    ckpt = load_checkpoint(path)
    out = save_checkpoint(tmp_path / "ranked", model, tokenizer, catalog, ckpt.transition, ckpt.text,
                          {"kind": "test"}, ranker=ranker)  # fmt: skip
    loaded = load_checkpoint(out)
    assert "ranker.safetensors" in loaded.manifest["sha256"]
    assert all(torch.equal(a, b) for a, b in zip(loaded.ranker.to_tensors().values(), ranker.to_tensors().values()))
    (out / "ranker.safetensors").write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match="ranker.safetensors"):
        load_checkpoint(out)
