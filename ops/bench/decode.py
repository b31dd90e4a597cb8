"""Decoding speed: Recast's batched trie beam search vs ``transformers.generate``.

Both run the same checkpoint on the same histories in one process, at batch 1 and
32 and beam widths 10 and 50, and print milliseconds per request. The transformers
side uses ``generate(num_beams=W, prefix_allowed_tokens_fn=...)``, the standard
way to constrain it; note that it ranks by raw log-probabilities while Recast
renormalises over the allowed tokens (recast/beam.py), so the table also shows the
share of their top-10 items the two have in common.

    python -m ops.bench.decode --checkpoint runs/demo/sft   # or: make bench-decode
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import torch


@torch.no_grad()
def _generate(hf, idx, valid, width: int, length: int, allowed, pad_id: int) -> torch.Tensor:
    return hf.generate(
        input_ids=idx,
        attention_mask=valid.long(),
        num_beams=width,
        num_return_sequences=width,
        max_new_tokens=length,
        do_sample=False,
        prefix_allowed_tokens_fn=allowed,
        pad_token_id=pad_id,
        eos_token_id=None,
        early_stopping=False,
    )


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="checkpoint dir (default: train a tiny one into runs/bench)")
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"))
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per cell (median reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    from transformers import AutoModelForCausalLM

    from learner.sft_trainer import train_sft
    from recast.beam import BeamSearchConfig, beam_search, pad_prompts
    from recast.checkpoint import load_checkpoint
    from recast.dataset import load_catalog, load_interactions
    from recast.sft import preset
    from recast.trie import ItemTrie
    from serving.engines.generate_engine import prefix_allowed_tokens_fn

    torch.set_num_threads(args.threads)
    if args.checkpoint is None:
        args.checkpoint = Path("runs/bench/tiny")
        if not (args.checkpoint / "manifest.json").exists():
            train_sft(args.data, args.data / "valid.csv", preset("tiny"), args.checkpoint, progress=False)
    ckpt = load_checkpoint(args.checkpoint)
    catalog = load_catalog(args.data)
    rows = load_interactions(args.data / "valid.csv", catalog)
    histories = [[catalog.index[i] for i in r.history][-ckpt.prompt_history() :] for r in rows[:64]]  # served cut
    tok = ckpt.tokenizer
    prompts = [tok.encode_history(ckpt.codes, h) for h in histories]
    trie = ItemTrie.build(ckpt.codes, len(tok))
    hf = AutoModelForCausalLM.from_pretrained(str(args.checkpoint)).eval()
    L = ckpt.codes.shape[1]

    results = []
    print(
        f"checkpoint {args.checkpoint} ({ckpt.model.num_parameters():,} parameters), "
        f"{platform.processor() or platform.machine()}, torch threads {args.threads}"
    )
    print(
        f"{'batch':>5} {'width':>5} {'recast ms/req':>14} {'generate ms/req':>16} {'speed-up':>9} {'top10 overlap':>14}"
    )
    for width in (10, 50):
        for batch in (1, 32):
            chunk = prompts[:batch]
            config = BeamSearchConfig(width)
            ours = _time(partial(beam_search, ckpt.model, trie, chunk, config, tok.pad_id), args.repeats)
            idx, valid = pad_prompts(chunk, tok.pad_id)
            allowed = prefix_allowed_tokens_fn(trie, idx.shape[1], tok.pad_id)
            generate = partial(_generate, hf, idx, valid, width, L, allowed, tok.pad_id)
            theirs = _time(generate, args.repeats)
            overlap = _top10_overlap(
                beam_search(ckpt.model, trie, chunk, config, tok.pad_id),
                generate(),
                ckpt.codes,
                idx.shape[1],
                batch,
                width,
            )
            cell = {
                "batch": batch,
                "width": width,
                "recast_ms": 1000 * ours / batch,
                "generate_ms": 1000 * theirs / batch,
                "top10_overlap": overlap,
            }
            results.append(cell)
            print(
                f"{batch:>5} {width:>5} {cell['recast_ms']:>14.2f} {cell['generate_ms']:>16.2f} "
                f"{theirs / ours:>8.1f}x {overlap:>14.2f}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def _top10_overlap(ours, sequences: torch.Tensor, codes: torch.Tensor, prompt_len: int, batch: int, width: int):
    by_code = {tuple(c): i for i, c in enumerate(codes.tolist())}
    generated = sequences[:, prompt_len:].view(batch, width, -1)
    shared = 0.0
    for row in range(batch):
        theirs = {by_code.get(tuple(c)) for c in generated[row, :10].tolist()}
        shared += len(theirs & {i for i, _ in ours.top(row, 10)}) / 10
    return shared / batch


if __name__ == "__main__":
    main()
