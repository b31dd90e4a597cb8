"""The vLLM engine against the torch engine on a real checkpoint: same items, same order, same scores.

A real in-process vLLM engine (no mocks), loaded once for the module. vLLM is imported at the top so
that these tests fail, not skip, where it is missing: CI installs it.
"""

import ast
import subprocess
import sys

import pytest
import torch
import vllm  # noqa: F401  (fail at collection where vLLM is not installed)

from recast.checkpoint import load_checkpoint
from recast.dataset import load_catalog
from recast.recommender import Recommender
from recast.trie import ItemTrie
from schemas.settings import Settings
from serving.engines.torch_engine import TorchEngine
from serving.engines.vllm_engine import VllmEngine
from tests.support.data import first_rows

NUM_HISTORIES = 200
TOP = 10


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def trie(checkpoint):
    return ItemTrie.build(checkpoint.codes, len(checkpoint.tokenizer))


@pytest.fixture(scope="module")
def engines(tiny_checkpoint, checkpoint, trie):
    vllm_engine = VllmEngine(tiny_checkpoint, trie, max_width=Settings().beam_width)
    yield TorchEngine(checkpoint.model, trie, checkpoint.tokenizer.pad_id), vllm_engine
    vllm_engine.close()


@pytest.fixture(scope="module")
def prompts(shipped_data, checkpoint):
    """The first 200 histories of the shipped valid.csv, cut and encoded as the product does."""
    catalog = load_catalog(shipped_data)
    rows = first_rows(NUM_HISTORIES, shipped_data / "valid.csv")
    histories = [[catalog.index[str(i)] for i in ast.literal_eval(row["history_item_id"])] for row in rows]
    recommender = Recommender(
        checkpoint.model, checkpoint.tokenizer, checkpoint.codes, checkpoint.transition, max_history=10
    )
    return recommender.prompts(histories)


def assert_same_top(expected, got, rows: int, k: int = TOP):
    for row in range(rows):
        want, have = expected.top(row, k), got.top(row, k)
        assert [i for i, _ in have] == [i for i, _ in want], f"row {row}"
        for (_, a), (_, b) in zip(want, have):
            assert b == pytest.approx(a, abs=1e-4), f"row {row}"


def test_vllm_ranks_like_the_torch_engine_at_the_product_width(engines, prompts):
    """200 shipped histories at Settings().beam_width (50): the same top-10 items in the same order,
    scores within 1e-4 (35-60 s for vLLM on 2 shared cores)."""
    torch_engine, vllm_engine = engines
    width = Settings().beam_width
    expected, got = torch_engine.beams(prompts, width), vllm_engine.beams(prompts, width)
    assert got.items.shape == got.scores.shape == (len(prompts), width)
    assert_same_top(expected, got, len(prompts))


def test_an_empty_history_decodes_from_bos_alone(engines, checkpoint):
    torch_engine, vllm_engine = engines
    prompt = [[checkpoint.tokenizer.bos_id]]
    got = vllm_engine.beams(prompt, 10)
    assert (got.items[0] >= 0).all() and torch.isfinite(got.scores[0]).all()
    assert_same_top(torch_engine.beams(prompt, 10), got, 1)


def test_beams_are_distinct_items_best_first(engines, prompts):
    _, vllm_engine = engines
    got = vllm_engine.beams(prompts[:4], 20)
    for row in range(4):
        items = got.items[row][got.items[row] >= 0].tolist()
        assert len(items) == len(set(items)) == 20
        assert (got.scores[row][:-1] >= got.scores[row][1:]).all()


def test_removed_items_leave_both_engines_alike(engines, trie, checkpoint, prompts):
    """Per-row live masks (retired items for all, exclusions per request): both engines decode each row over the
    trie of its live items, the same top items in the same order, with the same renormalised scores. Rows 0-2
    repeat one prompt with different exclusions, which vLLM must tell apart; rows 3-4 share a prompt and a mask."""
    torch_engine, vllm_engine = engines
    batch = [prompts[0], prompts[0], prompts[0], prompts[1], prompts[1], prompts[2]]
    plain = torch_engine.beams(batch, 20)
    N = checkpoint.codes.shape[0]
    removed = torch.zeros(len(batch), N, dtype=torch.bool)
    removed[:, plain.items[5, :2]] = True  # "retired": the top 2 of row 5, for every row
    removed[1, plain.items[1, :5]] = True
    removed[2, plain.items[2, :10]] = True
    removed[2, N // 2 :] = True  # half the catalog: whole prefixes die
    removed[3:5, plain.items[3, :3]] = True
    live = trie.live_nodes(removed)
    expected, got = torch_engine.beams(batch, 20, live), vllm_engine.beams(batch, 20, live)
    assert_same_top(expected, got, len(batch), k=20)
    for row in range(len(batch)):
        assert not removed[row, got.items[row][got.items[row] >= 0]].any(), f"row {row}"
        assert (got.items[row] >= 0).all(), f"row {row}"  # the beam never spent a slot on a removed item
    assert got.items[0].tolist() != got.items[1].tolist() != got.items[2].tolist()
    assert vllm_engine.processor.live is None  # the masks were for that call only


def test_anchored_decoding_merges_both_engines_beams_alike(engines, checkpoint, shipped_data):
    """A request decoded once per recent item (recast.anchors): the merge runs on what an engine returns, so
    engines that decode alike rank the merged beams alike. 40 histories, three anchors each, one-item prompts."""
    torch_engine, vllm_engine = engines
    catalog = load_catalog(shipped_data)
    rows = first_rows(40, shipped_data / "valid.csv")
    histories = [[catalog.index[str(i)] for i in ast.literal_eval(row["history_item_id"])] for row in rows]
    rec = Recommender(checkpoint.model, checkpoint.tokenizer, checkpoint.codes, checkpoint.transition, max_history=1,
                      anchors=3, anchor_decay=0.5)  # fmt: skip
    prompts, layout = rec.decode_inputs(histories)
    assert len(prompts) > len(histories)
    width = Settings().beam_width
    expected = rec.merge(torch_engine.beams(prompts, width), layout, width)
    got = rec.merge(vllm_engine.beams(prompts, width), layout, width)
    assert got.items.shape == (len(histories), width)
    assert_same_top(expected, got, len(histories))


def test_the_learned_ranker_serves_both_engines_beams_alike(engines, checkpoint, shipped_data):
    """With a learned ranker (recast.ranker) the beam is blended in after it: engines that decode alike serve the
    same lists with the same scores. The ranker is fitted on 400 shipped rows, the lists are 200 histories'."""
    from learner.ranker_trainer import fit_served_ranker
    from recast.dataset import load_interactions
    from recast.ranker import RankerConfig

    torch_engine, vllm_engine = engines
    catalog = load_catalog(shipped_data)
    rows = load_interactions(shipped_data / "valid.csv", catalog)
    ranker = fit_served_ranker(rows[:400], catalog.index, checkpoint.text, RankerConfig(epochs=5), 50)
    rec = Recommender(checkpoint.model, checkpoint.tokenizer, checkpoint.codes, checkpoint.transition,
                      text=checkpoint.text, ranker=ranker)  # fmt: skip
    histories = [[catalog.index[i] for i in r.history] for r in rows[:NUM_HISTORIES]]
    prompts, width = rec.prompts(histories), Settings().beam_width
    expected = rec.rank(histories, torch_engine.beams(prompts, width), TOP)
    got = rec.rank(histories, vllm_engine.beams(prompts, width), TOP)
    for row in range(len(histories)):
        assert [i for i, _ in got[row]] == [i for i, _ in expected[row]], f"row {row}"
        assert [s for _, s in got[row]] == pytest.approx([s for _, s in expected[row]], abs=1e-5), f"row {row}"


def test_where_the_catalog_runs_out_the_row_is_padded(tiny_checkpoint, checkpoint, prompts):
    """A 30-item trie at width 50: beams through tokens the trie forbids (vLLM keeps 2 * width
    candidates per beam, -inf ones included) never become items; the 30 match the torch engine's."""
    subset = torch.arange(0, checkpoint.codes.shape[0], checkpoint.codes.shape[0] // 30)[:30]
    trie = ItemTrie.build(checkpoint.codes[subset], len(checkpoint.tokenizer), items=subset)
    threads = torch.get_num_threads()
    engine = VllmEngine(tiny_checkpoint, trie, max_width=50)
    assert torch.get_num_threads() == threads  # vLLM lowers them to 1 for the process; the engine restores them
    try:
        batch = [[checkpoint.tokenizer.bos_id]] + prompts[:3]
        got = engine.beams(batch, 50)
        expected = TorchEngine(checkpoint.model, trie, checkpoint.tokenizer.pad_id).beams(batch, 50)
    finally:
        engine.close()
    assert (got.items[:, :30] >= 0).all() and (got.items[:, 30:] == -1).all()
    assert torch.isneginf(got.scores[:, 30:]).all()
    assert set(got.items[0, :30].tolist()) == set(subset.tolist())
    assert_same_top(expected, got, len(batch), k=30)


def test_a_width_past_max_width_is_refused(engines):
    _, vllm_engine = engines
    with pytest.raises(ValueError, match="max_width"):
        vllm_engine.beams([[1]], vllm_engine.max_width + 1)


def test_importing_the_engine_module_needs_no_vllm():
    """vLLM is imported when an engine is built, not when the module is imported."""
    code = "import sys; sys.modules['vllm'] = None; import serving.engines.vllm_engine"
    subprocess.run([sys.executable, "-c", code], check=True)
