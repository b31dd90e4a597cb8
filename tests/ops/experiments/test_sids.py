import math

import pytest
import torch

from ops.experiments.sids import (
    adjusted_rand,
    chance_share,
    collisions,
    compare,
    neighbour_share,
    neighbours,
    normalised_mutual_information,
    pair_agreement,
    prefix_ids,
    usage,
)

SIDS = [("<a_0>", "<b_0>"), ("<a_0>", "<b_1>"), ("<a_1>", "<b_0>"), ("<a_1>", "<b_0>")]


def test_neighbours_are_the_most_similar_others():
    similarity = torch.tensor([[1.0, 0.9, 0.1, 0.2], [0.9, 1.0, 0.3, 0.0], [0.1, 0.3, 1.0, 0.8], [0.2, 0.0, 0.8, 1.0]])
    assert neighbours(similarity, 2).tolist() == [[1, 3], [0, 2], [3, 1], [2, 0]]


def test_prefix_groups_shares_and_chance():
    assert prefix_ids(SIDS, 1).tolist() == [0, 0, 1, 1] and prefix_ids(SIDS, 2).tolist() == [0, 1, 2, 2]
    knn = torch.tensor([[1], [0], [3], [2]])
    assert neighbour_share(prefix_ids(SIDS, 1), knn) == 1.0
    assert neighbour_share(prefix_ids(SIDS, 2), knn) == 0.5
    # Two groups of two: another item is in one's group with probability 1/3.
    assert chance_share(prefix_ids(SIDS, 1)) == pytest.approx(1 / 3)
    # Of the 4 pairs sharing the first code, the 2 of items 2 and 3 share the second too; the converse holds always.
    assert pair_agreement(prefix_ids(SIDS, 1), prefix_ids(SIDS, 2), knn) == 0.5
    assert pair_agreement(prefix_ids(SIDS, 2), prefix_ids(SIDS, 1), knn) == 1.0


def test_ari_and_nmi():
    a = torch.tensor([0, 0, 1, 1, 2, 2])
    assert adjusted_rand(a, torch.tensor([5, 5, 3, 3, 4, 4])) == pytest.approx(1.0)
    assert normalised_mutual_information(a, torch.tensor([5, 5, 3, 3, 4, 4])) == pytest.approx(1.0)
    assert normalised_mutual_information(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])) == pytest.approx(0.0)
    assert adjusted_rand(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])) == pytest.approx(-0.5)


def test_collisions_and_usage():
    c = collisions(SIDS)
    assert c == {"sids": 3, "shared_sids": 1, "items_in_shared_sids": 2, "max_items_per_sid": 2,
                 "items_per_sid": 4 / 3}  # fmt: skip
    first, second = usage(SIDS)
    assert first["used"] == 2 and first["perplexity"] == pytest.approx(2.0)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))  # second level: 3 items on <b_0>, 1 on <b_1>
    assert second["largest"] == 3 and second["perplexity"] == pytest.approx(math.exp(entropy))


def test_compare_learnt_equal_to_shipped_agrees_fully():
    g = torch.Generator().manual_seed(0)
    vectors = torch.randn(40, 4, generator=g)
    sids = [(f"<a_{i % 4}>", f"<b_{i % 7}>", f"<c_{i}>") for i in range(40)]
    x = torch.nn.functional.normalize(vectors, dim=1)
    report = compare(sids, sids, {"space": x @ x.T}, k=5)
    assert report["level1_ari"] == pytest.approx(1.0) and report["level1_nmi"] == pytest.approx(1.0)
    rows = report["neighbours"]["space"]
    assert rows["shipped@1"] == rows["learnt@1"] and rows["shipped@2"] == rows["learnt@2"]
    assert report["agreement"]["space"][1] == {"learnt_given_shipped": 1.0, "shipped_given_learnt": 1.0}
