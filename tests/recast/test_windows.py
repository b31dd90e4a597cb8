from collections import Counter

import pytest

from recast.dataset import Interaction, load_catalog, load_interactions, write_interactions
from recast.windows import Sequence, build_sequences, later_sequences, split_users, transitions, user_folds

POSITION = {str(i): i for i in range(20)}


def test_chained_rows_count_each_window_once():
    rows = [
        Interaction("u", ("1", "2"), "3"),
        Interaction("v", ("1", "2"), "3"),  # another user's identical windows still count
        Interaction("u", ("1", "2", "3"), "4"),
    ]
    seqs = build_sequences(rows, POSITION, max_history=10)
    assert seqs[0] == Sequence("u", (1, 2, 3), (1.0, 1.0, 1.0))
    assert seqs[1] == Sequence("v", (1, 2, 3), (1.0, 1.0, 1.0))
    assert seqs[2] == Sequence("u", (1, 2, 3, 4), (0.0, 0.0, 0.0, 1.0))


def test_max_history_keeps_the_most_recent_items():
    rows = [Interaction("u", ("1", "2", "3", "4"), "5")]
    assert build_sequences(rows, POSITION, max_history=2)[0].items == (3, 4, 5)
    assert build_sequences(rows, POSITION, max_history=4)[0].items == (1, 2, 3, 4, 5)


def test_transitions_yield_only_counted_windows():
    seqs = [Sequence("u", (1, 2, 3), (1.0, 1.0, 1.0)), Sequence("u", (1, 2, 3, 4), (0.0, 0.0, 0.0, 1.0))]
    assert list(transitions(seqs)) == [(1, 2, 1.0), (2, 3, 1.0), (3, 4, 1.0)]


def test_later_sequences_pair_each_counted_target_with_single_items_further_back():
    seqs = [Sequence("u", (1, 2, 3), (1.0, 1.0, 1.0)), Sequence("u", (1, 2, 3, 4), (0.0, 0.0, 0.0, 1.0))]
    assert later_sequences(seqs, 1, 0.5) == [Sequence("u", (1, 3), (0.0, 0.5)), Sequence("u", (2, 4), (0.0, 0.5))]
    three_back = later_sequences(seqs, 2, 0.5)
    assert [s.items for s in three_back] == [(1, 3), (2, 4), (1, 4)]  # 1 -> 3 is not counted again by the second row
    assert later_sequences(seqs, 0, 0.5) == []


def test_split_users_is_deterministic_and_sized():
    users = [f"user{i}" for i in range(1000)]
    held = split_users(users + users[:10], 0.2, seed=7)  # repeated ids count once
    assert len(held) == 200 and held <= set(users)
    assert split_users(list(reversed(users)), 0.2, seed=7) == held
    assert split_users(users, 0.2, seed=8) != held


def test_user_folds_deal_each_user_once_in_near_equal_folds():
    users = [f"user{i}" for i in range(1001)]
    folds = user_folds(users + users[:10], 4, seed=3)  # repeated ids count once
    assert set(folds) == set(users) and sorted(Counter(folds.values()).values()) == [250, 250, 250, 251]
    assert user_folds(list(reversed(users)), 4, seed=3) == folds
    assert user_folds(users, 4, seed=4) != folds
    with pytest.raises(ValueError, match="two folds or more"):
        user_folds(users, 1, seed=0)


@pytest.mark.parametrize("holdout", [0.0, 1.0, -0.1, 1.5])
def test_split_users_refuses_bad_holdout(holdout):
    with pytest.raises(ValueError, match="holdout must be a fraction"):
        split_users(["a", "b"], holdout, seed=0)


def test_split_keeps_all_of_a_users_rows_together(make_dataset, tmp_path):
    data = make_dataset()
    catalog = load_catalog(data)
    rows = load_interactions(data / "valid.csv", catalog)
    held = split_users([r.user_id for r in rows], 0.25, seed=0)
    assert len(held) == 3  # round(12 * 0.25)
    for name, keep in (("train", lambda r: r.user_id not in held), ("heldout", lambda r: r.user_id in held)):
        write_interactions(data / "valid.csv", tmp_path / f"{name}.csv", {i for i, r in enumerate(rows) if keep(r)})
    train = load_interactions(tmp_path / "train.csv", catalog)
    heldout = load_interactions(tmp_path / "heldout.csv", catalog)
    assert {r.user_id for r in heldout} == held
    assert not {r.user_id for r in train} & held
    assert sorted(train + heldout, key=rows.index) == rows
