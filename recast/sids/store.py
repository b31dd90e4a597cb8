"""A fitted item tokenizer on disk, in the style of ``recast.checkpoint``: tensors in safetensors, the rest JSON.

- ``sid_tokenizer.safetensors``: ``idf`` (V,), ``basis`` (V, dim), ``codebook_<l>`` (k_l, dim);
- ``sid_index.json``: the fitted catalog's SIDs in the data set's format (``{item_id: ["<a_1>", ...]}``),
  so the directory doubles as the ``sid_index.json`` to train with;
- ``sid_tokenizer.json`` (written last): format version, the :class:`SidConfig`, the vocabulary (word id
  order) and the sha256 of the other two files, so a file from another fit is refused, not used.

Each file is written to a temporary name and renamed into place. Loading refuses, with
:class:`TokenizerFileError` naming the file and the problem, anything missing or inconsistent.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from recast.sids.features import TextFeaturizer
from recast.sids.residual import ResidualQuantizer
from recast.sids.tokenizer import ItemTokenizer, SidConfig

FORMAT_VERSION = 1
CONFIG_FILE = "sid_tokenizer.json"
TENSOR_FILE = "sid_tokenizer.safetensors"
INDEX_FILE = "sid_index.json"


class TokenizerFileError(ValueError):
    """A saved tokenizer that cannot be loaded; the message names the file and why."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def save_tokenizer(tokenizer: ItemTokenizer, out: Path | str) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {"idf": tokenizer.featurizer.idf, "basis": tokenizer.featurizer.basis}
    tensors.update({f"codebook_{level}": c for level, c in enumerate(tokenizer.quantizer.codebooks)})
    tmp = out / f".{TENSOR_FILE}.tmp"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, out / TENSOR_FILE)
    _atomic_write(out / INDEX_FILE, json.dumps({i: list(sid) for i, sid in tokenizer.fitted.items()}).encode())
    meta = {
        "format_version": FORMAT_VERSION,
        "config": tokenizer.config.to_dict(),
        "vocab": list(tokenizer.featurizer.vocab),
        "sha256": {name: _sha256(out / name) for name in (TENSOR_FILE, INDEX_FILE)},
    }
    _atomic_write(out / CONFIG_FILE, (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
    return out


def load_tokenizer(path: Path | str) -> ItemTokenizer:
    path = Path(path)
    config_path, tensor_path, index_path = path / CONFIG_FILE, path / TENSOR_FILE, path / INDEX_FILE
    for p in (config_path, tensor_path, index_path):
        if not p.is_file():
            raise TokenizerFileError(f"{p}: file not found (is {path} a directory from 'recast sids fit'?)")
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
        version = meta["format_version"]
        config = SidConfig(**{**meta["config"], "codebook_sizes": tuple(meta["config"]["codebook_sizes"])})
        vocab = tuple(meta["vocab"])
        expected = {name: meta["sha256"][name] for name in (TENSOR_FILE, INDEX_FILE)}
    except (ValueError, KeyError, TypeError) as exc:
        raise TokenizerFileError(f"{config_path}: unreadable tokenizer description ({exc})") from None
    if version != FORMAT_VERSION:
        raise TokenizerFileError(f"{config_path}: format version {version}, this code reads {FORMAT_VERSION}")
    for name, digest in expected.items():
        if _sha256(path / name) != digest:
            raise TokenizerFileError(f"{path / name}: sha256 differs from {CONFIG_FILE}'s: not this fit's file")
    try:
        t = load_file(str(tensor_path))
    except SafetensorError as exc:
        raise TokenizerFileError(f"{tensor_path}: {exc}") from None
    codebooks = tuple(t.get(f"codebook_{level}") for level in range(config.levels))
    if any(c is None for c in codebooks) or "idf" not in t or "basis" not in t:
        raise TokenizerFileError(f"{tensor_path}: missing tensors; has {sorted(t)}")
    shapes_ok = (
        t["idf"].shape == (len(vocab),)
        and t["basis"].shape == (len(vocab), config.dim)
        and all(c.shape == (k, config.dim) for c, k in zip(codebooks, config.codebook_sizes))
    )
    if not shapes_ok:
        raise TokenizerFileError(f"{tensor_path}: tensor shapes disagree with {CONFIG_FILE}")
    featurizer = TextFeaturizer(vocab, t["idf"], t["basis"], dict(config.field_weights))
    fitted = {i: tuple(sid) for i, sid in json.loads(index_path.read_text(encoding="utf-8")).items()}
    return ItemTokenizer(config, featurizer, ResidualQuantizer(tuple(c.to(torch.float) for c in codebooks)), fitted)
