"""The vLLM engine: ``LLM.beam_search`` over the checkpoint directory, constrained by the item trie.

The checkpoint directory is a ``LlamaForCausalLM`` + tokenizer directory, so vLLM loads its model
files directly (through links that leave out the scorers' tensors, see :data:`MODEL_FILES`).
The trie reaches vLLM as a logits processor (:mod:`serving.engines.trie_processor`), and with
``logprobs_mode="processed_logprobs"`` a beam's cumulative logprob is the sum of the masked,
renormalised log-probabilities: the score :mod:`recast.beam` defines, so both engines rank alike.

vLLM is imported only when an engine is built: importing this module costs nothing and works
where vLLM is not installed.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import torch

from recast.beam import BeamResult
from recast.trie import ItemTrie

# The measured recipe for a small in-process engine on the CPU (docs/platform-notes):
# no HF hub look-ups for a local directory; the engine core in this process (3-6 s to load instead
# of 30-40 s, and the trie-bound processor class reaches the model runner without pickling);
# no torch.compile (10-18 s saved on the first call, same results). setdefault: the caller's
# environment wins.
RECIPE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "TORCH_COMPILE_DISABLE": "1",
}


# What vLLM needs from a checkpoint directory. vLLM loads every *.safetensors file it finds as model
# weights, and a checkpoint also holds the transition and text scorers' tensors; so vLLM is shown a
# directory of links to these files only (the checkpoint itself stays untouched and may be read-only).
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def model_view(checkpoint_dir: Path, into: Path) -> Path:
    """Link the files vLLM loads from ``checkpoint_dir`` into the directory ``into``."""
    for name in MODEL_FILES:
        source = checkpoint_dir.resolve() / name
        if not source.is_file():
            raise FileNotFoundError(f"{source}: missing; not a complete checkpoint directory")
        (into / name).symlink_to(source)
    return into


class VllmEngine:
    name = "vllm"

    def __init__(self, checkpoint_dir: Path | str, trie: ItemTrie, max_width: int = 50, kv_cache_gib: int = 1):
        for key, value in RECIPE_ENV.items():
            os.environ.setdefault(key, value)
        # The CPU backend reserves this many GiB of KV cache when it starts (read there, so set here, not
        # defaulted: the argument is the caller's explicit choice); its default does not fit a small machine.
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
        from vllm import LLM

        from serving.engines.trie_processor import prefix_nodes, processor_for

        self.trie, self.max_width = trie, max_width
        self.codes = prefix_nodes(trie, trie.depth)  # full codes -> leaves, to read items off beams
        self.processor = processor_for(trie)  # the class vLLM instantiates; it reads its ``live`` per call
        self._view = tempfile.TemporaryDirectory(prefix="recast-vllm-")
        threads = torch.get_num_threads()
        self.llm = LLM(
            model=str(model_view(Path(checkpoint_dir), Path(self._view.name))),
            dtype="float32",  # the checkpoint's dtype; the torch engine decodes in float32 too
            distributed_executor_backend="uni",
            logits_processors=[self.processor],
            logprobs_mode="processed_logprobs",  # logprobs after the trie mask: the renormalised score
            max_logprobs=2 * max_width,  # beam search asks for 2 * width candidates per beam
            seed=0,
        )
        # vLLM's engine core lowers torch's threads to 1 for the whole process; in this process that would
        # silently slow everything else (the torch engine, the scorers), so the caller's setting is restored.
        torch.set_num_threads(threads)

    def beams(self, prompts: list[list[int]], width: int, live: torch.Tensor | None = None) -> BeamResult:
        from vllm import TokensPrompt
        from vllm.sampling_params import BeamSearchParams

        from serving.engines.trie_processor import PromptLive

        if not 1 <= width <= self.max_width:
            raise ValueError(f"beam width must be in 1..{self.max_width} (the engine's max_width), got {width}")
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token (the BOS token)")
        items = torch.full((len(prompts), width), -1, dtype=torch.long)
        scores = torch.full((len(prompts), width), float("-inf"))
        for rows in [list(range(len(prompts)))] if live is None else rounds(prompts, live):
            batch = [prompts[r] for r in rows]
            self.processor.live = None if live is None else PromptLive.of(batch, live[rows])
            try:
                outputs = self.llm.beam_search([TokensPrompt(prompt_token_ids=list(p)) for p in batch],
                                               BeamSearchParams(beam_width=width, max_tokens=self.trie.depth))
            finally:
                self.processor.live = None
            for row, prompt, output in zip(rows, batch, outputs, strict=True):
                ranked = self._items(output.sequences, len(prompt))[:width]
                for col, (item, score) in enumerate(ranked):
                    items[row, col], scores[row, col] = item, score
        return BeamResult(items=items, scores=scores)

    def _items(self, sequences, prompt_len: int) -> list[tuple[int, float]]:
        """A prompt's finished beams as (catalog position, score), best first, each item once; beams
        that are not a whole catalog code or carry no finite score (the trie ran out) are dropped."""
        best: dict[int, float] = {}
        for seq in sequences:
            node = self.codes.get(tuple(seq.tokens[prompt_len:]))
            if node is None or not math.isfinite(seq.cum_logprob):
                continue
            item = int(self.trie.leaf_item[node])
            if item >= 0 and seq.cum_logprob > best.get(item, float("-inf")):
                best[item] = seq.cum_logprob
        return sorted(best.items(), key=lambda pair: -pair[1])

    def close(self) -> None:
        # The in-process engine core holds the KV cache and the model; dropping the LLM frees them.
        llm, self.llm = self.llm, None
        if llm is not None:
            release(llm)
            del llm
        self._view.cleanup()


def release(llm) -> None:
    """Free an in-process engine's model and KV cache, leaving vLLM's process-wide state alone.

    vLLM's own teardown (``EngineCore.shutdown``, also run by a finaliser when the client is collected) ends with
    ``cleanup_dist_env_and_memory``, which destroys the process's distributed groups. Every in-process engine
    shares them, and a hot swap closes the old engine after the new one started, so that teardown broke the
    model just swapped in: every decode failed with "pipeline model parallel group is not initialized"
    (tests/serving/test_add_items_vllm.py). So the finaliser is detached and the rest of the teardown is done
    here; the groups stay for the next engine, which reuses them. Where the engine's parts are not where this
    vLLM keeps them, nothing is torn down: dropping the references still frees what they hold, and serving goes on.
    """
    import gc

    client = getattr(getattr(llm, "llm_engine", None), "engine_core", None)  # the in-process client
    core = getattr(client, "engine_core", None)
    finalizer = getattr(client, "_finalizer", None)
    if core is None or finalizer is None:
        return
    finalizer.detach()
    if getattr(core, "model_executor", None) is not None:
        core.model_executor.shutdown()
    if getattr(core, "scheduler", None) is not None:
        core.scheduler.shutdown()
    gc.unfreeze()  # the engine froze what it allocated at start; unfrozen, the collector can free it


def rounds(prompts: list[list[int]], live: torch.Tensor) -> list[list[int]]:
    """Rows split into beam_search calls in which equal prompts have equal live masks: the processor tells
    requests apart by their prompt alone. Two requests with one history but different exclusions take two
    calls; everything else takes one.

    >>> live = torch.tensor([[True, True], [True, False], [True, True], [True, True]])
    >>> rounds([[1, 5], [1, 5], [1, 6], [1, 5]], live)
    [[0, 2, 3], [1]]
    """
    out: list[tuple[list[int], dict[tuple[int, ...], int]]] = []
    for row, prompt in enumerate(prompts):
        key = tuple(prompt)
        for members, first in out:
            other = first.get(key)
            if other is None or torch.equal(live[other], live[row]):
                members.append(row)
                first.setdefault(key, row)
                break
        else:
            out.append(([row], {key: row}))
    return [members for members, _ in out]
