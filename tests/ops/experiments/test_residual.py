"""``ops.experiments.residual``: the product of a policy and the ranker scores candidates as the policy's own
decoding does where the ranker has no say, and follows the ranker where it has all of it."""

from __future__ import annotations

import torch

from ops.experiments.residual import item_trie, product_scores


def test_the_product_is_the_policys_score_at_power_0_and_the_rankers_order_at_a_large_one(tiny_checkpoint):
    from recast.checkpoint import load_checkpoint
    from recast.recommender import Recommender

    ckpt = load_checkpoint(tiny_checkpoint)
    histories = [[0, 5, 9], [17], [3, 4]]
    beams = Recommender.from_checkpoint(ckpt, 8).policy(histories)  # one anchor: the history's last item
    ranker = torch.zeros(3, ckpt.codes.shape[0])
    ranker[torch.arange(3), beams.items[:, -1]] = 1.0  # the ranker is sure of the beam's last item
    own = product_scores(ckpt, histories, beams.items, ranker, beta=0.0, floor=1e-3, top_k=20, sharpness=1.0)
    assert torch.allclose(own, beams.scores, atol=1e-4)  # the renormalised log-probabilities beam search scores
    led = product_scores(ckpt, histories, beams.items, ranker, beta=20.0, floor=1e-3, top_k=20, sharpness=1.0)
    assert led.argmax(dim=1).tolist() == [7, 7, 7]
    built = item_trie(ckpt)  # built once a run by the caller: the same scores
    assert torch.equal(product_scores(ckpt, histories, beams.items, ranker, 20.0, 1e-3, 20, 1.0, built), led)
    padded = torch.cat([beams.items[:, :2], torch.full((3, 1), -1)], dim=1)
    assert product_scores(ckpt, histories, padded, ranker, 1.0, 1e-3, 20, 1.0)[:, 2].isinf().all()
