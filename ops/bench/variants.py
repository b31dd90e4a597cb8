"""Copies of a checkpoint with perturbed weights: new versions of the same policy, for exercising
hot-swaps and the registry (benchmarks and tests) without training again."""

from __future__ import annotations

from pathlib import Path


def perturbed_copy(checkpoint: Path, out: Path, data: Path, seed: int, scale: float = 0.05) -> Path:
    """Save ``checkpoint`` to ``out`` with Gaussian noise of ``scale`` times each tensor's std added to the
    weights: another version (new hashes), same catalog, scorers and format."""
    import torch

    from recast.checkpoint import load_checkpoint, save_checkpoint
    from recast.dataset import load_catalog

    ckpt = load_checkpoint(checkpoint)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ckpt.model.parameters():
            p.add_(scale * p.std().nan_to_num(0.0) * torch.randn(p.shape, generator=g))
    keep = {k: v for k, v in ckpt.manifest.items() if k not in ("sha256", "format_version", "policy_config")}
    return save_checkpoint(out, ckpt.model, ckpt.tokenizer, load_catalog(data), ckpt.transition, ckpt.text,
                           {**keep, "perturbed_from": ckpt.version, "perturbation_seed": seed},
                           ranker=ckpt.ranker)  # fmt: skip
