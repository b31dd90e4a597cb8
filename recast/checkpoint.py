"""The checkpoint directory: one format for the torch engine, transformers and vLLM.

transformers loads the directory as it is. vLLM takes every ``*.safetensors`` file it finds for
model weights, the scorers' included, so its engine is shown a directory of links to the model
and tokenizer files only (``serving/engines/vllm_engine.py``).

Layout (every file written atomically, the manifest last):
- ``config.json``, ``model.safetensors``, ``generation_config.json``: a
  ``LlamaForCausalLM`` as ``save_pretrained`` writes it (tensor names match).
- ``tokenizer.json``, ``tokenizer_config.json``: the word-level SID tokenizer.
- ``item_codes.json``: the catalog as the policy knows it, ``[[item_id, [tokens]]]``
  in catalog order; decoding maps codes to items through this table alone.
- ``transition.safetensors``, ``text.safetensors``: the transition and text
  scorers fused into the served ranking.
- ``manifest.json``: format version, configs, data fingerprint, metrics, and the
  sha256 of every other file; loading verifies them, so a half-copied or
  tampered checkpoint is refused rather than served.

``generation_config.json`` pins greedy, non-sampling defaults: a model whose
defaults turn on sampling silently changes what ``generate`` does.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from recast.baselines import TransitionModel
from recast.catalog import Catalog
from recast.model import PolicyConfig, SidPolicy
from recast.text import TextModel
from recast.tokenizer import SidTokenizer

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
HASHED_FILES = (
    "config.json",
    "model.safetensors",
    "item_codes.json",
    "transition.safetensors",
    "text.safetensors",
    "tokenizer.json",
)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded; the message says which file and why."""


@dataclass
class Checkpoint:
    path: Path
    model: SidPolicy
    tokenizer: SidTokenizer
    item_ids: list[str]  # catalog position -> item id
    codes: torch.Tensor  # (N, L) token ids, catalog order
    transition: TransitionModel
    text: TextModel
    manifest: dict

    @property
    def version(self) -> str:
        """Short content id: the first 12 hex digits of the weights' sha256."""
        return self.manifest["sha256"]["model.safetensors"][:12]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, obj) -> None:
    _atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def save_checkpoint(
    out: Path | str,
    model: SidPolicy,
    tokenizer: SidTokenizer,
    catalog: Catalog,
    transition: TransitionModel,
    text: TextModel,
    manifest: dict,
) -> Path:
    """Write a complete checkpoint directory; ``manifest`` adds run facts (configs, data, metrics)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hf_config = model.config.to_hf(tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id)
    _write_json(out / "config.json", hf_config)
    _write_json(
        out / "generation_config.json",
        {
            "do_sample": False,
            "num_beams": 1,
            "bos_token_id": tokenizer.bos_id,
            "eos_token_id": tokenizer.eos_id,
            "pad_token_id": tokenizer.pad_id,
        },
    )
    _save_tensors(out / "model.safetensors", {k: v.detach().cpu() for k, v in model.state_dict().items()})
    tokenizer.to_hf().save_pretrained(str(out))
    _write_json(out / "item_codes.json", [[item.item_id, list(item.code)] for item in catalog.items])
    _save_tensors(out / "transition.safetensors", transition.to_tensors())
    _save_tensors(out / "text.safetensors", text.to_tensors())
    full = {
        **manifest,
        "format_version": FORMAT_VERSION,
        "policy_config": model.config.to_dict(),
        "num_items": len(catalog),
        "sha256": {name: sha256_file(out / name) for name in HASHED_FILES},
    }
    _write_json(out / MANIFEST, full)
    return out


def read_manifest(path: Path | str) -> dict:
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{path}: no {MANIFEST}: not a checkpoint, or its save did not finish")
    return json.loads(manifest_path.read_text())


def verify_checkpoint(path: Path | str) -> dict:
    """Check every hashed file against the manifest; returns the manifest."""
    path = Path(path)
    manifest = read_manifest(path)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {manifest.get('format_version')}, expected {FORMAT_VERSION}")
    for name, expected in manifest["sha256"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing")
        if sha256_file(file) != expected:
            raise CheckpointError(f"{file}: sha256 does not match the manifest (corrupt or modified)")
    return manifest


def load_checkpoint(path: Path | str, verify: bool = True) -> Checkpoint:
    path = Path(path)
    manifest = verify_checkpoint(path) if verify else read_manifest(path)
    config = PolicyConfig(**manifest["policy_config"])
    model = SidPolicy(config)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    model.eval()
    table = json.loads((path / "item_codes.json").read_text())
    # The tokenizer's vocabulary is rebuilt from tokenizer.json so ids are exactly the saved ones.
    vocab = json.loads((path / "tokenizer.json").read_text())["model"]["vocab"]
    tokenizer = SidTokenizer(vocab=tuple(sorted(vocab, key=vocab.get)))
    codes = torch.tensor([[tokenizer.token_id(t) for t in code] for _, code in table], dtype=torch.long)
    transition = TransitionModel.from_tensors(load_file(str(path / "transition.safetensors")))
    text = TextModel.from_tensors(load_file(str(path / "text.safetensors")))
    item_ids = [item_id for item_id, _ in table]
    return Checkpoint(path, model, tokenizer, item_ids, codes, transition, text, manifest)


def update_manifest(path: Path | str, key: str, value) -> None:
    """Record a fact about a finished checkpoint (e.g. evaluation metrics); the
    hashed files are untouched, so it stays verifiable."""
    manifest = read_manifest(path)
    manifest[key] = value
    _write_json(Path(path) / MANIFEST, manifest)
