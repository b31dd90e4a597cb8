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
  scorers fused into the served ranking; ``ranker.safetensors`` (optional): the learned
  ranker over their candidates (:mod:`recast.ranker`), where the run trained one.
- ``manifest.json``: format version, configs, data fingerprint, metrics, the
  catalog version it was trained on (``catalog``: its Postgres id, digest and retired
  items, see :mod:`recast.catalog_version`; a manifest without one names the base
  version of its ``item_codes.json``: every item live), and the sha256 of every other
  file; loading verifies them, so a half-copied or tampered checkpoint is refused
  rather than served. The manifest must list *every* file of the directory
  (format 2): a file it does not name (a changed
  ``tokenizer_config.json``, a stray extra) is refused too, so nothing can change
  under a version. The version is a hash of the whole manifest (:func:`manifest_version`),
  so two checkpoints that differ in any file, config or fact have different versions.

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
from recast.catalog_version import CatalogVersion, CatalogVersionError, base_version, extension_problem, from_manifest
from recast.model import PolicyConfig, SidPolicy
from recast.ranker import Ranker
from recast.text import TextModel
from recast.tokenizer import SidTokenizer

FORMAT_VERSION = 2  # 2: the manifest hashes every file of the directory, and the version hashes the manifest
MANIFEST = "manifest.json"
RANKER_FILE = "ranker.safetensors"
_HEX = frozenset("0123456789abcdef")


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
    catalog: CatalogVersion  # the catalog version it was trained on
    ranker: Ranker | None = None  # the learned ranker of the served ranking; None: the fixed mix

    @property
    def version(self) -> str:
        """Short content id of the whole manifest (so of every file, config and recorded fact)."""
        return manifest_version(self.manifest)

    def prompt_history(self, default: int = 10) -> int:
        """History items a prompt to this policy keeps: the cut its SFT was trained with (``default`` where the
        manifest does not say). A longer prompt than it was trained on can exceed its positions (a one-item policy
        has 9)."""
        return self.manifest.get("sft_config", {}).get("max_history", default)

    def teacher_history(self) -> int:
        """History items the distillation teacher read for each one-item window (``SFTConfig.teacher_history``);
        0, the window's own context, where the manifest does not say."""
        return self.manifest.get("sft_config", {}).get("teacher_history", 0)

    def anchors(self) -> tuple[int, float]:
        """How the policy is decoded: prompts per request, one per recent item, and the merge's decay
        (``recast.anchors``); (1, 0.5), the history alone, where the manifest does not say."""
        sft = self.manifest.get("sft_config", {})
        return sft.get("anchors", 1), sft.get("anchor_decay", 0.5)


def manifest_version(manifest: dict) -> str:
    """The first 12 hex digits of the sha256 of the manifest's canonical JSON: any change anywhere in it (a file's
    hash, a config, the parent) is another version.

    >>> manifest_version({"a": 1, "b": [2]}) == manifest_version({"b": [2], "a": 1})
    True
    >>> manifest_version({"a": 1}) == manifest_version({"a": 2})
    False
    """
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


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
    transient: tuple[str, ...] = (),
    catalog_version: CatalogVersion | None = None,
    ranker: Ranker | None = None,
) -> Path:
    """Write a complete checkpoint directory; ``manifest`` adds run facts (configs, data, metrics).

    ``catalog_version``: the catalog version it was trained on, which must hold exactly ``catalog``'s item codes.
    The default is ``catalog``'s base version, with every item live and no Postgres id.

    Every file in ``out`` is hashed into the manifest except ``transient`` ones, which the caller removes right
    after (a trainer's resume state): until it does, the checkpoint does not verify, which is the point."""
    base = base_version(catalog)
    if catalog_version is None:
        catalog_version = base
    elif dict(catalog_version.codes) != dict(base.codes):
        problem = extension_problem(base, catalog_version) or "it holds items the catalog does not"
        raise ValueError(f"catalog {catalog_version.name} is not the catalog being saved: {problem}")
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
    if ranker is not None:
        _save_tensors(out / RANKER_FILE, ranker.to_tensors())
    full = {
        **manifest,
        "format_version": FORMAT_VERSION,
        "policy_config": model.config.to_dict(),
        "num_items": len(catalog),
        "catalog": catalog_version.manifest_entry(),
        "sha256": {name: sha256_file(out / name) for name in directory_files(out) if name not in transient},
    }
    _write_json(out / MANIFEST, full)
    return out


def directory_files(path: Path) -> list[str]:
    """Every entry of a checkpoint directory but the manifest, sorted: what the manifest must hash."""
    return sorted(p.name for p in path.iterdir() if p.name != MANIFEST)


def read_manifest(path: Path | str) -> dict:
    """The manifest, checked for shape: :class:`CheckpointError` names what is wrong (never a traceback)."""
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{path}: no {MANIFEST}: not a checkpoint, or its save did not finish")
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{manifest_path}: not readable JSON ({exc})") from None
    problem = manifest_problem(manifest)
    if problem is not None:
        raise CheckpointError(f"{manifest_path}: {problem}")
    return manifest


def manifest_problem(manifest) -> str | None:
    """What makes ``manifest`` unusable, or None.

    >>> manifest_problem([]), manifest_problem({"format_version": 1})
    ('not a JSON object', 'format_version 1, expected 2 (re-save the checkpoint with this version of recast)')
    >>> manifest_problem({"format_version": 2, "sha256": {"a": "xyz"}, "policy_config": {}})
    "sha256['a'] is not a sha256 hex digest"
    """
    if not isinstance(manifest, dict):
        return "not a JSON object"
    if manifest.get("format_version") != FORMAT_VERSION:
        return (f"format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION} "
                "(re-save the checkpoint with this version of recast)")  # fmt: skip
    hashes = manifest.get("sha256")
    if not isinstance(hashes, dict) or not hashes:
        return "no sha256 table of the directory's files"
    for name, digest in hashes.items():
        if not isinstance(name, str) or "/" in name or name in ("", ".", "..", MANIFEST):
            return f"sha256 names {name!r}, which is not a file of the directory"
        if not (isinstance(digest, str) and len(digest) == 64 and set(digest) <= _HEX):
            return f"sha256[{name!r}] is not a sha256 hex digest"
    if not isinstance(manifest.get("policy_config"), dict):
        return "no policy_config object"
    return None


def verify_checkpoint(path: Path | str) -> dict:
    """Check that the manifest lists exactly the directory's files and that each matches its hash; returns it."""
    path = Path(path)
    manifest = read_manifest(path)
    present, listed = set(directory_files(path)), set(manifest["sha256"])
    if present - listed:
        raise CheckpointError(f"{path}: not in the manifest: {', '.join(sorted(present - listed))} (every file of a "
                              "checkpoint must be hashed in it)")  # fmt: skip
    for name, expected in sorted(manifest["sha256"].items()):
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing")
        if sha256_file(file) != expected:
            raise CheckpointError(f"{file}: sha256 does not match the manifest (corrupt or modified)")
    return manifest


def load_checkpoint(path: Path | str, verify: bool = True) -> Checkpoint:
    path = Path(path)
    manifest = verify_checkpoint(path) if verify else read_manifest(path)
    try:
        return _load(path, manifest)
    except (KeyError, TypeError, ValueError) as exc:  # files that hash right but do not hold what they should
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None


def _load(path: Path, manifest: dict) -> Checkpoint:
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
    ranker = Ranker.from_tensors(load_file(str(path / RANKER_FILE))) if (path / RANKER_FILE).is_file() else None
    catalog = _catalog(path, manifest, {item_id: "".join(code) for item_id, code in table})
    return Checkpoint(path, model, tokenizer, item_ids, codes, transition, text, manifest, catalog, ranker)


def _catalog(path: Path, manifest: dict, codes: dict[str, str]) -> CatalogVersion:
    """The catalog version the manifest names. A manifest from before catalog versions names none, and that
    means its item codes' base version."""
    if "catalog" not in manifest:
        return CatalogVersion(codes)
    try:
        return from_manifest(manifest["catalog"], codes)
    except CatalogVersionError as exc:
        raise CheckpointError(f"{path / MANIFEST}: catalog: {exc}") from None


def update_manifest(path: Path | str, key: str, value) -> None:
    """Record a fact about a finished checkpoint (e.g. evaluation metrics); the
    hashed files are untouched, so it stays verifiable."""
    manifest = read_manifest(path)
    manifest[key] = value
    _write_json(Path(path) / MANIFEST, manifest)
