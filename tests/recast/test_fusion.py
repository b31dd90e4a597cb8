import math

import pytest
import torch

from recast.baselines import top_items
from recast.fusion import FusionConfig, fuse

TRANSITION = torch.tensor([1.0, 2.0, 3.0, 4.0])  # scaled to its max: 0.25, 0.5, 0.75, 1


def _beam(probs: dict[int, float]) -> list[tuple[int, float]]:
    return [(item, math.log(p)) for item, p in probs.items()]


def test_policy_weight_one_reproduces_the_beam():
    out = fuse(_beam({3: 0.5, 1: 0.3, 0: 0.1}), TRANSITION, 3, FusionConfig(1.0, text_weight=0.0, temperature=2.0))
    assert [i for i, _ in out] == [3, 1, 0]
    root = [math.sqrt(p) for p in (0.5, 0.3, 0.1)]  # softmax(log p / 2) is proportional to sqrt(p)
    assert [p for _, p in out] == pytest.approx([r / sum(root) for r in root])


def test_policy_weight_zero_reproduces_the_transition_order():
    scores = torch.tensor([0.2, 0.9, 0.0, 0.9, 0.4])
    out = fuse(_beam({2: 0.9, 0: 0.1}), scores, 5, FusionConfig(0.0, text_weight=0.0))
    assert [i for i, _ in out] == top_items(scores, 5) == [1, 3, 4, 0, 2]
    assert [p for _, p in out] == pytest.approx([1.0, 1.0, 4 / 9, 2 / 9, 0.0])


def test_mixture_by_hand():
    out = fuse(_beam({0: 0.5, 2: 0.3}), TRANSITION, 4, FusionConfig(0.6, text_weight=0.0, temperature=1.0))
    # policy .625/.375; 0: .4*.25 + .6*.625 = .475  1: .4*.5 = .2  2: .4*.75 + .6*.375 = .525  3: .4*1 = .4
    assert [i for i, _ in out] == [2, 0, 3, 1]
    assert [p for _, p in out] == pytest.approx([0.525, 0.475, 0.4, 0.2])
    hot = fuse(_beam({0: 0.5, 2: 0.3}), TRANSITION, 2, FusionConfig(0.6, text_weight=0.0, temperature=2.0))
    share0 = math.sqrt(0.5) / (math.sqrt(0.5) + math.sqrt(0.3))
    assert hot == [(2, pytest.approx(0.3 + 0.6 * (1 - share0))), (0, pytest.approx(0.1 + 0.6 * share0))]


def test_items_outside_the_beam_are_ranked_by_transition():
    out = fuse(_beam({0: 0.9}), TRANSITION, 4, FusionConfig(0.5, text_weight=0.0))
    assert out == [(0, pytest.approx(0.625)), (3, 0.5), (2, 0.375), (1, 0.25)]
    assert [i for i, _ in fuse([], TRANSITION, 4, FusionConfig(0.5, text_weight=0.0))] == [3, 2, 1, 0]


@pytest.mark.parametrize("weight, temperature", [(-0.1, 1.0), (1.5, 1.0), (0.5, 0.0), (0.5, -1.0)])
def test_invalid_config_raises(weight, temperature):
    with pytest.raises(ValueError, match="must be"):
        FusionConfig(weight, text_weight=0.0, temperature=temperature)


def test_text_weight_must_leave_room_for_the_policy():
    with pytest.raises(ValueError, match="text_weight"):
        FusionConfig(0.8, text_weight=0.3)
    assert FusionConfig(0.4, text_weight=0.3).transition_weight == pytest.approx(0.3)
    assert FusionConfig(0.9, text_weight=0.1).transition_weight == pytest.approx(0.0)  # float rounding


def test_three_way_mixture_by_hand():
    text = torch.tensor([0.0, 2.0, 0.0, 1.0])  # scaled to its max: 0, 1, 0, .5
    out = fuse(_beam({0: 0.5, 2: 0.5}), TRANSITION, 4, FusionConfig(0.4, text_weight=0.3, temperature=1.0), text)
    # 0: .3*.25 + .4*.5 = .275   1: .3*.5 + .3*1 = .45   2: .3*.75 + .4*.5 = .425   3: .3*1 + .3*.5 = .45
    assert [i for i, _ in out][:2] == [1, 3] and [i for i, _ in out][2:] == [2, 0]
    assert [p for _, p in out] == pytest.approx([0.45, 0.45, 0.425, 0.275])


def test_without_text_scores_the_text_share_goes_to_transitions():
    config = FusionConfig(0.4, text_weight=0.3)
    alone = fuse(_beam({0: 0.9}), TRANSITION, 4, config)
    assert alone == fuse(_beam({0: 0.9}), TRANSITION, 4, FusionConfig(0.4, text_weight=0.0))
