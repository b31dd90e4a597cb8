"""Adding items online on the vLLM engine, over real HTTP against the real stack: after the swap that the addition
triggers, the vLLM engine decodes over the grown trie and the service returns the new item.

vLLM is slow to start on the CPU, so one server serves the module (tests/serving/test_add_items.py has the torch
engine's side, validation and ``recast items add``).
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import vllm  # noqa: F401  (fail at collection where vLLM is not installed)

from recast.dataset import load_item_entries
from serving.engines.torch_engine import TorchEngine
from tests.support.api import ADMIN, ApiServer, api_settings
from tests.support.data import histories
from tests.support.databases import fresh_database

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def server(stack, tmp_path_factory, shipped_data, tiny_checkpoint):
    with fresh_database(stack, "add_vllm") as db:
        settings = api_settings(stack, shipped_data, tmp_path_factory.mktemp("spool"), checkpoint=tiny_checkpoint,
                                engine="vllm", beam_width=20, database_url=db, registry_poll_s=0,
                                catalog_poll_s=0.2)  # fmt: skip
        with ApiServer(settings) as server:
            yield server


def recommend(server, history: list[str], k: int = 50):
    with server.client() as client:
        return client.post("/v1/recommend", json={"user_id": "u-add-vllm", "history": history, "k": k})


def test_an_added_item_is_decoded_and_returned_by_the_vllm_engine_after_the_swap(server, shipped_data):
    before = server.services.holder.current
    assert before.engine.name == "vllm"
    assert recommend(server, ["new-v1"]).status_code == 422  # unknown before it is added: the test can fail
    # The new item copies the text of the item the engine's beams hold most often, so it lands on that item's SID
    # (with <d_1>) at a place the beams reach.
    cut = [[before.item_ids.index(i) for i in h] for h in histories(40)]
    held = server.on_decoder(before.engine.beams, before.recommender.prompts(cut), before.width).items
    copied = Counter(held[held >= 0].tolist()).most_common(1)[0][0]
    entry = load_item_entries(shipped_data)[before.item_ids[copied]]
    item = {"item_id": "new-v1", "title": entry["title"], "brand": entry.get("brand") or "",
            "description": str(entry.get("description") or "")}  # fmt: skip
    with server.client(ADMIN) as admin:
        answer = admin.post("/v1/admin/items", json={"items": [item]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["served"] and answer.json()["error"] is None
    model = server.services.holder.current
    assert model is not before and model.engine.name == "vllm"  # swapped, and still on vLLM
    new = model.item_ids.index("new-v1")
    assert answer.json()["codes"]["new-v1"].startswith(model.sids[copied])

    # Served over HTTP by the swapped-in engine (the old engine's close must not break the new one).
    twin = model.item_ids[copied]
    assert "new-v1" in [i["item_id"] for i in recommend(server, [twin]).json()["items"]]
    as_history = recommend(server, ["new-v1"])
    assert as_history.status_code == 200 and twin in [i["item_id"] for i in as_history.json()["items"]]

    # The engine itself decodes the new item: its code is only in the grown trie. Where a beam holds the copied item
    # (same SID, <d_0>), that item is removed for the row, so the path below their shared SID leads to the new
    # item's <d_1> alone: vLLM must decode it there, exactly as the torch engine does over the same trie.
    rec = model.recommender
    prompts = rec.prompts(cut)
    torch_engine = TorchEngine(rec.model, rec.trie, rec.tokenizer.pad_id)
    plain = server.on_decoder(model.engine.beams, prompts, model.width)
    assert plain.items.tolist() == torch_engine.beams(prompts, model.width).items.tolist()
    rows = [r for r in range(len(cut)) if (plain.items[r] == copied).any()]
    assert rows  # some beam reaches the shared SID, or the check below would hold vacuously
    removed = torch.zeros(len(rows), rec.num_items, dtype=torch.bool)
    removed[:, copied] = True
    live = rec.trie.live_nodes(removed)
    got = server.on_decoder(model.engine.beams, [prompts[r] for r in rows], model.width, live)
    want = torch_engine.beams([prompts[r] for r in rows], model.width, live)
    assert got.items.tolist() == want.items.tolist()
    assert all((row == new).any() for row in got.items)
