"""Serving engines head to head: the torch engine vs the vLLM engine, milliseconds per request.

Both engines decode the same shipped histories from the same checkpoint in one process, at batch
1 and 32 and beam widths 10 and 50, under the same score (recast/beam.py). Every timed call gets
prompts no earlier call saw, so vLLM's prefix cache helps only within a call, as it would in
service. Also printed: the vLLM engine's construction time and the share of requests whose top-10
(items and order) the two engines agree on.

    python -m ops.bench.engines --checkpoint runs/demo/sft

Without --checkpoint a tiny policy is trained into runs/bench/tiny-vllm (one 32-dim head: vLLM's
CPU attention supports head sizes of 32 and up).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

WIDTHS = (10, 50)
BATCHES = (1, 32)


def _ms_per_request(engine, chunks: list[list[list[int]]], width: int) -> float:
    """Median over calls (one chunk each) of the time per prompt, after one warm-up call."""
    engine.beams(chunks[0], width)
    per_request = []
    for chunk in chunks[1:]:
        start = time.perf_counter()
        engine.beams(chunk, width)
        per_request.append((time.perf_counter() - start) / len(chunk))
    return 1000 * statistics.median(per_request)


def _agreement(a, b, rows: int) -> float:
    """Share of requests whose top-10 items, in order, are the same under both engines."""
    return sum([i for i, _ in a.top(r, 10)] == [i for i, _ in b.top(r, 10)] for r in range(rows)) / rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="checkpoint dir (default: train a tiny one, see above)")
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"))
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per cell (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads for both engines")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    from learner.sft_trainer import train_sft
    from recast.checkpoint import load_checkpoint
    from recast.dataset import load_catalog, load_interactions
    from recast.sft import preset
    from recast.trie import ItemTrie
    from serving.engines.torch_engine import TorchEngine
    from serving.engines.vllm_engine import VllmEngine

    torch.set_num_threads(args.threads)
    if args.checkpoint is None:
        args.checkpoint = Path("runs/bench/tiny-vllm")
        if not (args.checkpoint / "manifest.json").exists():
            config = replace(preset("tiny"), n_head=1)
            train_sft(args.data, args.data / "valid.csv", config, args.checkpoint, progress=False)
    ckpt = load_checkpoint(args.checkpoint)
    catalog = load_catalog(args.data)
    rows = load_interactions(args.data / "valid.csv", catalog)
    cut = ckpt.prompt_history()  # the served prompt: the history cut the policy was trained with
    prompts = [ckpt.tokenizer.encode_history(ckpt.codes, [catalog.index[i] for i in r.history][-cut:]) for r in rows]
    trie = ItemTrie.build(ckpt.codes, len(ckpt.tokenizer))

    start = time.perf_counter()
    vllm_engine = VllmEngine(args.checkpoint, trie, max_width=max(WIDTHS))
    load_s = time.perf_counter() - start
    torch_engine = TorchEngine(ckpt.model, trie, ckpt.tokenizer.pad_id)

    print(
        f"checkpoint {args.checkpoint} ({ckpt.model.num_parameters():,} parameters), "
        f"{platform.processor() or platform.machine()}, torch threads {args.threads}; "
        f"vLLM engine built in {load_s:.1f} s"
    )
    print(f"{'batch':>5} {'width':>5} {'torch ms/req':>13} {'vllm ms/req':>12} {'vllm/torch':>10} {'same top10':>11}")
    results, offset = [], 0
    for width in WIDTHS:
        for batch in BATCHES:
            chunks = [prompts[offset + i * batch : offset + (i + 1) * batch] for i in range(args.repeats + 1)]
            offset += batch * (args.repeats + 1)
            ours, theirs = _ms_per_request(torch_engine, chunks, width), _ms_per_request(vllm_engine, chunks, width)
            same = _agreement(torch_engine.beams(chunks[-1], width), vllm_engine.beams(chunks[-1], width), batch)
            cell = {"batch": batch, "width": width, "torch_ms": ours, "vllm_ms": theirs, "same_top10": same}
            results.append(cell)
            print(f"{batch:>5} {width:>5} {ours:>13.2f} {theirs:>12.2f} {theirs / ours:>9.1f}x {same:>11.2f}")
    vllm_engine.close()
    if args.json:
        args.json.write_text(json.dumps({"vllm_load_s": load_s, "cells": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
