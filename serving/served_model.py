"""A checkpoint made ready to serve: verified, loaded, its engine built and warmed.

A :class:`ServedModel` is immutable once built; serving a new checkpoint means building
another one beside it and swapping the reference (:mod:`serving.hotswap`), so a batch
that started on a model finishes on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from recast.added_items import grow_checkpoint
from recast.catalog import Catalog, sid_text
from recast.catalog_version import CatalogVersion
from recast.checkpoint import MANIFEST, Checkpoint, CheckpointError, load_checkpoint, sha256_file
from recast.fusion import FusionConfig
from recast.recommender import Recommender
from schemas.settings import Settings
from serving.engines.base import Engine
from serving.engines.factory import build_engine

log = logging.getLogger("recast.serving")


class ModelLoadError(RuntimeError):
    """A checkpoint that must not be served; the message says which file or check failed."""


@dataclass(frozen=True)
class ServedModel:
    version: str
    path: Path
    manifest_sha256: str
    recommender: Recommender
    engine: Engine
    width: int  # beams decoded per request
    item_ids: tuple[str, ...]  # catalog position -> item id
    titles: tuple[str, ...]
    sids: tuple[str, ...]
    load_s: float  # verify + load + build + warm
    # The retired set's live-node row, kept for the set it was built from (the one served until the catalog next
    # changes): most batches remove nothing else, and rebuilding it took a few passes over the trie per batch.
    _retired_live: dict = field(default_factory=dict, repr=False, compare=False)

    def rank(self, histories: list[list[int]], ks: list[int], exclude: list[set[int]],
             removed: list[set[int]] | None = None, retired: torch.Tensor | None = None,
             ) -> list[list[tuple[int, float]]]:  # fmt: skip
        """One decode for the whole batch, then each request's top-k (catalog position, score), best first.

        ``exclude``: per request, positions left out of its list after ranking (``exclude_history``: the beam
        may hold them, and the rest keep their order). ``removed``: per request, positions that are not
        candidates at all, and ``retired`` (positions, a long tensor) are removed for every request. Removed
        items leave the trie (the beam never spends a slot on them, in any engine) and the fused ranking
        (the transition and text scorers cover the whole catalog), and k items are still returned while the
        catalog has them."""
        B, N = len(histories), self.recommender.num_items
        # The live catalog may hold items added after this model was loaded: they are not its candidates yet.
        retired = None if retired is None else retired[retired < N]
        removed = None if removed is None else [{p for p in r if p < N} for r in removed]
        mask = None
        if (removed is not None and any(removed)) or (retired is not None and len(retired)):
            mask = torch.zeros(B, N, dtype=torch.bool)
            if retired is not None:
                mask[:, retired] = True
            for row, positions in enumerate(removed or []):
                mask[row, list(positions)] = True
        # With anchors (recast.anchors) a request is several prompts; their beams merge into the request's.
        prompts, layout = self.recommender.decode_inputs(histories)
        if mask is None:
            live = None
        elif removed is not None and any(removed):
            live = self.recommender.trie.live_nodes(mask)
            live = live if layout is None else live[layout.rows]
        else:  # the same mask in every row: the retired set's
            live = self._live_after_retiring(retired, mask[:1]).expand(len(prompts), -1)
        beams = self.recommender.merge(self.engine.beams(prompts, self.width, live), layout, self.width)
        # The fused ranking is a stable sort, so a request's top-k is a prefix of the batch's deepest list.
        depth = min(N, max(k + len(x) for k, x in zip(ks, exclude, strict=True)))
        ranked = self.recommender.rank(histories, beams, depth, removed=mask)
        return [[(i, s) for i, s in r if i not in x][:k] for r, k, x in zip(ranked, ks, exclude, strict=True)]

    def _live_after_retiring(self, retired: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        """(1, num_nodes) live nodes once ``retired`` is removed (``row``: its (1, N) mask), cached per retired set."""
        key = retired.numpy().tobytes()
        live = self._retired_live.get(key)
        if live is None:
            live = self.recommender.trie.live_nodes(row)
            self._retired_live.clear()  # one set at a time: a catalog change replaces it
            self._retired_live[key] = live
        return live

    def close(self) -> None:
        self.engine.close()


def fusion_config(settings: Settings) -> FusionConfig:
    overrides = {"policy_weight": settings.fusion_policy_weight, "text_weight": settings.fusion_text_weight}
    return replace(FusionConfig(), **{k: v for k, v in overrides.items() if v is not None})


def served_recommender(ckpt: Checkpoint, settings: Settings) -> Recommender:
    """The checkpoint's served ranking under the settings' overrides: the fixed mix's weights, and the policy's
    share after a learned ranker (the operator's share wins there too). ``ValueError`` for an invalid mix. The
    service and ``recast eval`` both build it here, so eval scores what would be served."""
    fusion = fusion_config(settings)
    if ckpt.ranker is not None and settings.fusion_policy_weight is not None:
        ckpt = replace(ckpt, ranker=replace(ckpt.ranker, policy_weight=settings.fusion_policy_weight))
    return Recommender.from_checkpoint(ckpt, settings.beam_width, fusion, settings.max_history)


def load_served_model(
    path: Path | str, catalog: Catalog, settings: Settings, expected_sha256: str | None = None,
    admit: Callable[[CatalogVersion], str | None] | None = None,
) -> ServedModel:
    """Verify and load a checkpoint, build the settings' engine and decode once; :class:`ModelLoadError`
    if any of it fails (the caller keeps serving what it has).

    ``expected_sha256``: the registry's hash of the checkpoint's manifest; every other file is then
    checked against the manifest's own hashes, so one registered hash pins the whole directory.
    ``admit``: given the catalog version the checkpoint was trained on, why it must not be served
    (:meth:`serving.catalog.LiveCatalog.admit`: the served catalog must extend it), or None."""
    path, t0 = Path(path), time.monotonic()
    try:
        manifest_sha256 = sha256_file(path / MANIFEST)
        if expected_sha256 is not None and manifest_sha256 != expected_sha256.lower():
            raise ModelLoadError(
                f"{path}: manifest sha256 {manifest_sha256[:12]}... is not the registered {expected_sha256[:12]}..."
            )
        ckpt = load_checkpoint(path)  # checks every file against the manifest
    except (CheckpointError, OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(str(exc)) from exc
    problem = admit(ckpt.catalog) if admit is not None else None
    if problem is not None:
        # The reason first: error bodies are cut at 200 characters, and the caller knows the path it sent.
        raise ModelLoadError(f"trained on catalog {ckpt.catalog.name} and {problem} ({path})")
    if list(ckpt.item_ids) != [item.item_id for item in catalog.items[: len(ckpt.item_ids)]]:
        raise ModelLoadError(f"{path} was trained on another catalog than the one served ({len(catalog)} items)")
    if ckpt.manifest.get("sft_config", {}).get("residual", 0):
        # Its probabilities are what the ranker's must be multiplied by (recast.sft.SFTConfig.residual), and the
        # served ranking blends the policy's beam instead: decoded alone, it would rank nothing sensible.
        raise ModelLoadError(f"{path}: a residual policy ranks only multiplied with its ranker, which no engine "
                             "serves (ops.experiments.residual scores it offline)")  # fmt: skip
    try:  # over the items added online since it was trained: no new weights (see recast.added_items)
        ckpt = grow_checkpoint(ckpt, catalog)
    except ValueError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None
    recommender = served_recommender(ckpt, settings)
    try:
        engine = build_engine(settings.engine, path, ckpt.model, recommender.trie, ckpt.tokenizer.pad_id,
                              max_width=settings.beam_width, kv_cache_gib=settings.vllm_kv_cache_gib,
                              cache_entries=settings.beam_cache_entries)  # fmt: skip
    except Exception as exc:  # an engine that cannot start (no vLLM, bad head size) is a refused model
        raise ModelLoadError(f"{path}: the {settings.engine} engine failed to start: {exc}") from exc
    model = ServedModel(
        version=ckpt.version, path=path, manifest_sha256=manifest_sha256, recommender=recommender, engine=engine,
        width=settings.beam_width, item_ids=tuple(ckpt.item_ids), titles=tuple(i.title for i in catalog.items),
        sids=tuple(sid_text(i.sid) for i in catalog.items), load_s=0.0,
    )  # fmt: skip
    try:
        # Warm up before taking traffic: the first decode allocates caches (and profiles, in vLLM).
        model.rank([[], [0]], [10, 10], [set(), set()])
    except Exception as exc:
        engine.close()
        raise ModelLoadError(f"{path}: the warm-up decode failed: {exc}") from exc
    model = replace(model, load_s=time.monotonic() - t0)
    log.info("model %s from %s ready on %s in %.2f s", model.version, path, engine.name, model.load_s)
    return model
