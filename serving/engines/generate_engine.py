"""The naive baseline engine: one ``transformers.generate`` call per request, no batching.

This is what a first attempt at serving a generative recommender looks like, kept so that
benchmarks (``ops/bench/serve.py``, ``ops/bench/decode.py``) measure the real engines against it
in the same run. Each prompt gets its own ``generate(num_beams=W, num_return_sequences=W,
prefix_allowed_tokens_fn=...)``, the standard way to constrain transformers' beam search to the
item trie; batching requests together is deliberately not done: that is the point of a baseline.

Its scores are NOT the product's score. ``generate`` ranks by *raw* log-probabilities: the
log-softmax over the whole vocabulary, with the disallowed tokens masked afterwards, so the
probability mass of tokens the trie forbids is lost rather than renormalised over the allowed
ones (:mod:`recast.beam` renormalises). Scores here are that raw sum (``length_penalty=0``, so
no division by length). The rankings differ accordingly: on the tiny preset (2 epochs) top-1
matched the torch engine on 14 of 20 histories and the top-10s shared ~58% of their items; on the
1-epoch test policy top-1 matched on none.

transformers is imported only when an engine is built.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from recast.beam import NEG_INF, BeamResult
from recast.trie import ROOT, ItemTrie


def trie_children(trie: ItemTrie) -> list[dict[int, int]]:
    """The CSR trie as one ``{token: child node}`` dict per node: a Python walk per decoding step is
    what ``prefix_allowed_tokens_fn`` calls for, and dict lookups keep that walk cheap."""
    offsets, tokens, nodes = trie.child_offsets.tolist(), trie.child_tokens.tolist(), trie.child_nodes.tolist()
    return [
        dict(zip(tokens[offsets[n] : offsets[n + 1]], nodes[offsets[n] : offsets[n + 1]]))
        for n in range(trie.num_nodes)
    ]


def walk(children: list[dict[int, int]], path: list[int]) -> int | None:
    """The trie node reached by ``path`` from the root; None when the trie does not contain it."""
    node = ROOT
    for token in path:
        node = children[node].get(token)
        if node is None:
            return None
    return node


def prefix_allowed_tokens_fn(
    trie: ItemTrie, prompt_len: int, off_trie: int, live: list[bool] | None = None
) -> Callable[[int, torch.Tensor], list[int]]:
    """``prefix_allowed_tokens_fn`` for ``generate``: the tokens the trie allows after what was generated
    past the (left-padded) prompt of length ``prompt_len``. The state is the generated tail itself,
    nothing counted between calls.

    A beam off the trie (only when there are more beams than items: generate then fills beams with
    -inf tokens) may continue with ``off_trie`` alone (the pad id): generate refuses an empty list, and
    the beam's score is -inf already, so it never outranks an item and decoding maps it to no item.

    ``live`` (one bool per trie node, :meth:`~recast.trie.ItemTrie.live_nodes`): only children that are live."""
    children = trie_children(trie)

    def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        node = walk(children, input_ids[prompt_len:].tolist())
        kids = [] if node is None else [t for t, c in children[node].items() if live is None or live[c]]
        return kids or [off_trie]

    return allowed


class GenerateEngine:
    name = "generate"

    def __init__(self, checkpoint_dir: Path, trie: ItemTrie, pad_id: int):
        from transformers import LlamaForCausalLM

        self.hf = LlamaForCausalLM.from_pretrained(str(checkpoint_dir), torch_dtype=torch.float32).eval()
        self.trie, self.pad_id = trie, pad_id
        self.children = trie_children(trie)

    @torch.no_grad()
    def _one(self, prompt: list[int], width: int, live: list[bool] | None = None) -> tuple[list[int], list[float]]:
        """One prompt's generate call -> (catalog positions, raw log-prob sums), best first, valid only."""
        idx = torch.tensor([prompt], dtype=torch.long)  # (1, T)
        out = self.hf.generate(
            input_ids=idx,
            attention_mask=torch.ones_like(idx),
            num_beams=width,
            num_return_sequences=width,
            max_new_tokens=self.trie.depth,
            min_new_tokens=self.trie.depth,
            do_sample=False,
            prefix_allowed_tokens_fn=prefix_allowed_tokens_fn(self.trie, len(prompt), self.pad_id, live),
            pad_token_id=self.pad_id,
            eos_token_id=None,  # items have a fixed length; nothing may end a beam early
            early_stopping=False,
            length_penalty=0.0,  # sequences_scores = the plain sum of log-probabilities
            output_scores=True,
            return_dict_in_generate=True,
        )
        items, scores, seen = [], [], set()
        for code, score in zip(out.sequences[:, len(prompt) :].tolist(), out.sequences_scores.tolist()):
            node = walk(self.children, code)
            item = -1 if node is None else int(self.trie.leaf_item[node])
            # A beam forced through masked tokens (more beams than items) is not an item; skip it.
            if item < 0 or item in seen or score == NEG_INF:
                continue
            seen.add(item)
            items.append(item)
            scores.append(score)
        order = sorted(range(len(items)), key=lambda i: -scores[i])  # generate sorts already; make it explicit
        return [items[i] for i in order], [scores[i] for i in order]

    def beams(self, prompts: list[list[int]], width: int, live: torch.Tensor | None = None) -> BeamResult:
        items = torch.full((len(prompts), width), -1, dtype=torch.long)  # (B, W)
        scores = torch.full((len(prompts), width), NEG_INF)  # (B, W)
        for row, prompt in enumerate(prompts):
            if not prompt:
                raise ValueError("every prompt needs at least one token (the BOS token)")
            got, raw = self._one(prompt, width, None if live is None else live[row].tolist())
            items[row, : len(got)] = torch.tensor(got, dtype=torch.long)
            scores[row, : len(raw)] = torch.tensor(raw)
        return BeamResult(items, scores)

    def close(self) -> None:
        self.hf = None
