"""The refresh's continued SFT keeps the served policy's own objective: a distilled policy keeps its teacher."""

import math
from dataclasses import replace

import torch

from learner.refresh.config import RefreshConfig
from learner.refresh.learn import continue_sft
from recast.baselines import TransitionModel
from recast.checkpoint import load_checkpoint
from recast.sft import item_paths
from recast.teacher_forcing import token_logprobs
from recast.trie import ItemTrie
from recast.windows import Sequence


def _logp(ckpt, model, context: int, item: int) -> float:
    """log pi(first code token of ``item`` | ``context``): off the logged item's path the teacher's soft targets
    reach the first level only (``recast.distill``), so that is where the two objectives are compared."""
    trie = ItemTrie.build(ckpt.codes, len(ckpt.tokenizer))
    prompt = ckpt.tokenizer.encode_history(ckpt.codes, [context])
    with torch.no_grad():
        logp = token_logprobs(model, trie, item_paths(trie, ckpt.codes), [prompt], [item], ckpt.codes,
                              ckpt.tokenizer.pad_id)  # fmt: skip
    return float(logp[0, 0])


def test_a_distilled_policy_is_refreshed_towards_its_teacher_and_a_plain_one_towards_the_logged_item(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    context, logged = 0, 1
    # The teacher's choice after `context`: an item that differs from the logged one at the first code level, so
    # the two objectives disagree from the first token on.
    teacher_item = next(i for i in range(len(ckpt.item_ids)) if ckpt.codes[i, 0] != ckpt.codes[logged, 0])
    teacher = TransitionModel.fit([Sequence("t", (context, teacher_item), (0.0, 1.0))] * 5, len(ckpt.item_ids))
    distilled = replace(ckpt, manifest={**ckpt.manifest, "sft_config": {
        **ckpt.manifest["sft_config"], "distill_weight": 1.0, "teacher_text_weight": 0.0, "teacher_top_k": 1}})
    windows = [Sequence("u", (context, logged), (0.0, 1.0))] * 64
    config = RefreshConfig(sft_epochs=5, sft_lr=1e-2)

    plain = continue_sft(ckpt, windows, config, seed=0, scorers=(teacher, ckpt.text)).model
    taught = continue_sft(distilled, windows, config, seed=0, scorers=(teacher, ckpt.text)).model

    start = {i: _logp(ckpt, ckpt.model, context, i) for i in (logged, teacher_item)}
    assert _logp(ckpt, plain, context, logged) > start[logged] + 1.0  # the checkpoint does not distil: the logged item
    assert _logp(ckpt, taught, context, teacher_item) > start[teacher_item] + 1.0
    assert _logp(ckpt, taught, context, teacher_item) > _logp(ckpt, plain, context, teacher_item) + 1.0
    assert _logp(ckpt, taught, context, logged) < _logp(ckpt, plain, context, logged) - 1.0


def test_a_policy_distilled_from_the_ranker_is_refreshed_towards_the_checkpoints_ranker(tiny_checkpoint,
                                                                                          shipped_data):  # fmt: skip
    import pytest

    from learner.ranker_trainer import fit_served_ranker
    from recast.dataset import load_catalog, load_interactions
    from recast.distill import ranker_teacher_scores
    from recast.ranker import RankerConfig

    ckpt = load_checkpoint(tiny_checkpoint)
    recipe = {**ckpt.manifest["sft_config"], "distill_weight": 1.0, "teacher_top_k": 1, "teacher": "ranker",
              "ranker": True}  # fmt: skip
    taught = replace(ckpt, manifest={**ckpt.manifest, "sft_config": recipe})
    context, logged = 0, 1
    windows = [Sequence("u", (context, logged), (0.0, 1.0))] * 64
    config = RefreshConfig(sft_epochs=5, sft_lr=1e-2)
    with pytest.raises(ValueError, match="ranker"):  # the recipe names a teacher the checkpoint does not hold
        continue_sft(taught, windows, config, seed=0, scorers=(ckpt.transition, ckpt.text))
    catalog = load_catalog(shipped_data)
    rows = load_interactions(shipped_data / "valid.csv", catalog)[:400]
    ranker = fit_served_ranker(rows, catalog.index, ckpt.text, RankerConfig(epochs=5), 50)
    taught = replace(taught, ranker=ranker)
    favourite = int(ranker_teacher_scores(ckpt.transition, ckpt.text, ranker, [[context]])[0].argmax())
    assert ckpt.codes[favourite, 0] != ckpt.codes[logged, 0]  # else the two objectives would agree
    model = continue_sft(taught, windows, config, seed=0, scorers=(ckpt.transition, ckpt.text)).model
    assert _logp(ckpt, model, context, favourite) > _logp(ckpt, ckpt.model, context, favourite) + 1.0


def test_a_policy_whose_teacher_read_its_rows_is_refreshed_towards_labels_read_from_the_rows(tiny_checkpoint):
    """One item after ``context`` the teacher says B; reading the item before it too, it says A. The refresh hands a
    ``teacher_history`` policy whole rows (learner.refresh.run) and must teach A; cut to one item, B."""
    ckpt = load_checkpoint(tiny_checkpoint)
    earlier, context, logged = 0, 1, 2
    a = next(i for i in range(3, len(ckpt.item_ids)) if ckpt.codes[i, 0] != ckpt.codes[logged, 0])
    b = next(i for i in range(3, len(ckpt.item_ids)) if ckpt.codes[i, 0] not in (ckpt.codes[logged, 0],
                                                                                 ckpt.codes[a, 0]))  # fmt: skip
    c = next(i for i in range(3, len(ckpt.item_ids)) if i not in (a, b))
    counted = [((context, b), 4), ((context, a), 3), ((context, c), 3), ((earlier, a), 5)]
    teacher = TransitionModel.fit([Sequence("t", pair, (0.0, 1.0)) for pair, n in counted for _ in range(n)],
                                  len(ckpt.item_ids))  # fmt: skip
    assert teacher.scores([context]).argmax() == b and teacher.scores([earlier, context]).argmax() == a
    one_item = {**ckpt.manifest["sft_config"], "distill_weight": 1.0, "teacher_text_weight": 0.0, "teacher_top_k": 1,
                "short_context": 1, "max_history": 1, "long_windows": False}  # fmt: skip
    cut = replace(ckpt, manifest={**ckpt.manifest, "sft_config": one_item})
    rows = replace(ckpt, manifest={**ckpt.manifest, "sft_config": {**one_item, "teacher_history": 2}})
    config = RefreshConfig(sft_epochs=5, sft_lr=1e-2)

    by_item = continue_sft(cut, [Sequence("u", (context, logged), (0.0, 1.0))] * 64, config, seed=0,
                           scorers=(teacher, ckpt.text)).model  # fmt: skip
    # Two counted windows a row, each learnt cut to the prompt's one item as the first SFT learnt them: twice the steps.
    refreshed = continue_sft(rows, [Sequence("u", (earlier, context, logged), (0.0, 1.0, 1.0))] * 64, config, seed=0,
                             scorers=(teacher, ckpt.text))  # fmt: skip
    by_row = refreshed.model

    assert refreshed.steps == 2 * math.ceil(64 / config.sft_batch_size) * config.sft_epochs
    assert _logp(ckpt, by_row, context, a) > _logp(ckpt, by_item, context, a) + 1.0
    assert _logp(ckpt, by_item, context, b) > _logp(ckpt, by_row, context, b) + 1.0
