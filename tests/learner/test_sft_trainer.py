from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from learner.sft_trainer import STATE_FILE, prepare_data, train_sft
from recast.checkpoint import load_checkpoint
from recast.sft import preset
from tests.support.data import valid_rows
from tests.support.paths import DATA


@pytest.fixture(scope="module")
def small_train(tmp_path_factory) -> Path:
    """The first 150 rows of the shipped interactions (real catalog, small enough for seconds)."""
    return valid_rows(tmp_path_factory.mktemp("data") / "train.csv", 150)


CONFIG = replace(preset("tiny"), epochs=3, dropout=0.1, batch_size=32)


def test_training_writes_a_loadable_checkpoint(small_train, tmp_path):
    result = train_sft(DATA, small_train, CONFIG, tmp_path / "ckpt", progress=False)
    assert result.checkpoint == tmp_path / "ckpt" and len(result.losses) == 3
    assert result.losses[-1] < result.losses[0]
    assert not (tmp_path / "ckpt" / STATE_FILE).exists()  # resume state removed once complete
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.manifest["data"]["rows"] == 150
    assert ckpt.manifest["sft_config"]["epochs"] == 3


def test_same_seed_same_weights_and_resume_is_exact(small_train, tmp_path):
    straight = train_sft(DATA, small_train, CONFIG, tmp_path / "a", progress=False)
    partial = train_sft(DATA, small_train, CONFIG, tmp_path / "b", progress=False, epoch_budget=1)
    assert partial.checkpoint is None and (tmp_path / "b" / STATE_FILE).exists()
    resumed = train_sft(DATA, small_train, CONFIG, tmp_path / "b", progress=False)
    assert resumed.losses == straight.losses
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_another_config_is_refused(small_train, tmp_path):
    train_sft(DATA, small_train, CONFIG, tmp_path / "c", progress=False, epoch_budget=1)
    with pytest.raises(ValueError, match="another configuration"):
        train_sft(DATA, small_train, replace(CONFIG, lr=1e-4), tmp_path / "c", progress=False)


def test_a_run_from_a_checkpoint_starts_from_its_weights_and_changes_every_parameter(small_train, tmp_path):
    first = train_sft(DATA, small_train, CONFIG, tmp_path / "first", progress=False)
    result = train_sft(DATA, small_train, replace(CONFIG, epochs=1, lr=1e-3), tmp_path / "next", progress=False,
                       init_from=first.checkpoint)  # fmt: skip
    before, after = load_checkpoint(first.checkpoint), load_checkpoint(result.checkpoint)
    assert after.manifest["init_from"] == before.version
    assert after.manifest["sft_config"]["epochs"] == 1 and after.manifest["sft_config"]["lr"] == 1e-3
    start = before.model.state_dict()
    for name, p in after.model.state_dict().items():
        assert not torch.equal(p, start[name]), f"{name} did not change"
    # one epoch from the trained weights starts near their loss, far below a fresh run's first epoch
    assert result.losses[0] < first.losses[0]


def test_a_distilling_run_with_short_windows_trains_and_loads(small_train, tmp_path):
    config = replace(CONFIG, distill_weight=0.5, teacher_sharpness=4.0, short_context=1, length_pool=4)
    result = train_sft(DATA, small_train, config, tmp_path / "d", progress=False)
    assert result.losses[-1] < result.losses[0]
    assert load_checkpoint(result.checkpoint).manifest["sft_config"]["distill_weight"] == 0.5


def test_a_table_run_trains_on_whole_item_pairs_alone(small_train):
    # The one-item objective written out (recast.distill.teacher_table_sequences): no windows, no soft labels.
    config = replace(CONFIG, short_context=1, max_history=1, long_windows=False, distill_weight=0.8,
                     item_teacher_weight=0.5, teacher_table=3)  # fmt: skip
    data = prepare_data(DATA, small_train, config)
    assert data.labels is None
    assert all(s.user_id == "table" and len(s.items) == 2 for s in data.sequences)
    per_item = Counter(s.items[0] for s in data.sequences)
    assert len(per_item) == len(data.catalog) and max(per_item.values()) == 3  # every item, its best three
    # The windows' weight is all there: each counted window adds 1 to its item's row (with the item teacher's 0.5).
    assert sum(s.weights[1] for s in data.sequences) <= data.num_windows + 0.5 * len(data.catalog) + 1e-6


def test_average_last_saves_the_mean_of_the_last_epochs_weights(small_train, tmp_path):
    plain = replace(CONFIG, dropout=0.0)
    train_sft(DATA, small_train, plain, tmp_path / "x", progress=False, epoch_budget=2)
    after_two = torch.load(tmp_path / "x" / STATE_FILE, weights_only=True)["model"]
    train_sft(DATA, small_train, plain, tmp_path / "x", progress=False)
    after_three = load_file(str(tmp_path / "x" / "model.safetensors"))
    train_sft(DATA, small_train, replace(plain, average_last=2), tmp_path / "y", progress=False)
    averaged = load_file(str(tmp_path / "y" / "model.safetensors"))
    for name, value in averaged.items():
        assert torch.allclose(value, (after_two[name] + after_three[name]) / 2, atol=1e-6), name


def test_a_pair_run_adds_the_two_item_windows_and_trains(small_train, tmp_path):
    one = replace(CONFIG, short_context=1, max_history=1, long_windows=False, distill_weight=0.8)
    pair = replace(one, max_history=2, pair_context_weight=0.5)
    singles, both = prepare_data(DATA, small_train, one), prepare_data(DATA, small_train, pair)
    extra = both.sequences[len(singles.sequences) :]
    assert both.sequences[: len(singles.sequences)] == singles.sequences
    assert extra and all(len(s.items) == 3 and s.weights == (0.0, 0.0, 0.5) for s in extra)
    # a counted window after two items or more, whose one-item window is trained too
    assert {s.items[1:] for s in extra} <= {s.items for s in singles.sequences}
    assert len(extra) < len(singles.sequences)  # windows after the row's first item have one item of context
    result = train_sft(DATA, small_train, pair, tmp_path / "p", progress=False)
    assert result.losses[-1] < result.losses[0]
    assert load_checkpoint(result.checkpoint).prompt_history() == 2


def test_teacher_history_labels_each_window_reading_its_rows_last_items(small_train):
    one = replace(CONFIG, short_context=1, max_history=1, long_windows=False, distill_weight=0.8)
    prompt = prepare_data(DATA, small_train, one)
    history = prepare_data(DATA, small_train, replace(one, teacher_history=10))
    assert history.sequences == prompt.sequences  # the same windows; only what the teacher reads differs
    assert all(r[0] == -1 and r[-1] >= 0 for r in history.labels.rows)
    assert history.labels.items.shape[0] > prompt.labels.items.shape[0]  # a row's items are more distinct contexts
    moved = sum(not torch.equal(history.labels.items[h[-1]], prompt.labels.items[p[-1]])
                for h, p in zip(history.labels.rows, prompt.labels.rows))  # fmt: skip
    assert moved > len(prompt.sequences) // 4


def test_later_steps_add_windows_of_true_items_further_on(small_train):
    one = replace(CONFIG, short_context=1, max_history=1, long_windows=False, distill_weight=0.8)
    plain, later = prepare_data(DATA, small_train, one), prepare_data(DATA, small_train, replace(one, later_steps=2))
    extra = later.sequences[len(plain.sequences) :]
    assert later.sequences[: len(plain.sequences)] == plain.sequences
    assert extra and all(len(s.items) == 2 and s.weights == (0.0, one.later_weight) for s in extra)
    assert later.labels.rows[len(plain.sequences) :] == tuple((-1, -1) for _ in extra)  # true items, no teacher
    assert len(extra) <= 2 * len(plain.sequences)  # two items back at most, after the second


def test_teacher_paths_train_other_items_and_resume_exactly(small_train, tmp_path):
    one = replace(CONFIG, short_context=1, max_history=1, long_windows=False, distill_weight=0.8)
    drawn = replace(one, teacher_paths=True)
    true_path = train_sft(DATA, small_train, one, tmp_path / "true", progress=False)
    straight = train_sft(DATA, small_train, drawn, tmp_path / "drawn", progress=False)
    assert straight.losses != true_path.losses  # teacher forcing followed other items
    assert straight.losses[-1] < straight.losses[0]
    # The draws follow the run's seed and step, so a resumed run draws what a straight one did.
    train_sft(DATA, small_train, drawn, tmp_path / "resumed", progress=False, epoch_budget=1)
    assert train_sft(DATA, small_train, drawn, tmp_path / "resumed", progress=False).losses == straight.losses
    assert load_checkpoint(straight.checkpoint).manifest["sft_config"]["teacher_paths"] is True


def test_a_residual_run_reads_its_teacher_out_of_fold_and_trains_through_it(small_train, tmp_path):
    one = replace(CONFIG, short_context=1, max_history=1, long_windows=False, ranker=True, teacher="ranker",
                  teacher_history=10, teacher_top_k=50)  # fmt: skip
    distilled = prepare_data(DATA, small_train, replace(one, distill_weight=0.8))
    residual = prepare_data(DATA, small_train, replace(one, residual=1.0))
    key = lambda s: (s.user_id, s.items, s.weights)  # noqa: E731
    assert sorted(map(key, residual.sequences)) == sorted(map(key, distilled.sequences))  # regrouped by fold

    def own_target_taught(data) -> int:
        """Windows whose own next item the teacher's label holds."""
        return sum(bool((data.labels.items[r[-1]] == s.items[-1])[data.labels.probs[r[-1]] > 0].any())
                   for s, r in zip(data.sequences, data.labels.rows, strict=True))  # fmt: skip

    # Counted from every row, the teacher has seen each window's next item; out of fold it often has not.
    assert own_target_taught(residual) < own_target_taught(distilled) * 0.8
    results = [train_sft(DATA, small_train, replace(one, residual=b), tmp_path / f"r{b}", progress=False)
               for b in (1.0, 2.0)]  # fmt: skip
    assert results[0].losses != results[1].losses  # the teacher enters the loss, at its power
    assert all(r.losses[-1] < r.losses[0] for r in results)
    assert load_checkpoint(results[0].checkpoint).manifest["sft_config"]["residual"] == 1.0
