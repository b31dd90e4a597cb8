"""Loss values and gradients of the PPO-clip, k3 and pairwise logistic objectives, by hand."""

import math

import pytest
import torch

from recast.signals.objective import (
    ObjectiveConfig,
    PairBatch,
    actor_loss,
    k3_kl,
    pairwise_logistic_loss,
    policy_gradient_loss,
    ppo_clip,
)

CFG = ObjectiveConfig()


def test_config_defaults_and_validation():
    assert (CFG.clip_low, CFG.clip_high, CFG.kl_beta, CFG.logistic_tau) == (0.2, 0.28, 1e-3, 1.0)
    for bad in (
        dict(clip_low=-0.1),
        dict(clip_low=1.0),
        dict(clip_high=-0.01),
        dict(kl_beta=-1e-3),
        dict(logistic_tau=0.0),
        dict(logistic_tau=-1.0),
    ):
        with pytest.raises(ValueError):
            ObjectiveConfig(**bad)
    ObjectiveConfig(clip_low=0.0, clip_high=0.0, kl_beta=0.0)  # the boundary values are allowed


def test_k3_values():
    # d = ref - lp; k3 = e^d - d - 1
    lp = torch.tensor([0.0, -1.0, -2.0, -0.5])
    ref = torch.tensor([1.0, -1.0, -1.0, -1.5])
    # d = 1 -> e - 2 = .7182818; d = 0 -> 0; d = 1 -> .7182818; d = -1 -> e^-1 + 1 - 1 = .3678794
    expected = [math.e - 2, 0.0, math.e - 2, math.exp(-1)]
    assert k3_kl(lp, ref).tolist() == pytest.approx(expected, abs=1e-6)
    assert (k3_kl(torch.randn(50), torch.randn(50)) >= 0).all()


def test_k3_gradient():
    # d/dlp (e^(ref - lp) - (ref - lp) - 1) = -e^(ref - lp) + 1
    lp = torch.tensor([0.0, -1.0, -0.5], requires_grad=True)
    ref = torch.tensor([1.0, -1.0, -1.5])
    k3_kl(lp, ref).sum().backward()
    # d = 1 -> 1 - e = -1.7182818; d = 0 -> 0; d = -1 -> 1 - e^-1 = .6321206
    assert lp.grad.tolist() == pytest.approx([1 - math.e, 0.0, 1 - math.exp(-1)], abs=1e-6)


def test_ppo_clip_at_ratio_one_is_minus_advantage():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.25]])
    adv = torch.tensor([2.0, -0.5])
    out = ppo_clip(logp, logp.detach(), adv, CFG)
    # rho = 1 inside [0.8, 1.28]: -min(A, A) = -A per token
    assert out.tolist() == [[-2.0, -2.0], [0.5, 0.5]]


def test_ppo_clip_values_outside_the_trust_region():
    # ratios e^x chosen exactly: old = 0, logp = log(rho)
    rhos = [1.5, 1.5, 0.5, 0.5, 1.1]
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0, 2.0])
    logp = torch.tensor([[math.log(r)] for r in rhos])
    out = ppo_clip(logp, torch.zeros(5, 1), adv, CFG).squeeze(1)
    # A=+1, rho 1.5: -min(1.5, 1.28) = -1.28      A=-1, rho 1.5: -min(-1.5, -1.28) = 1.5
    # A=+1, rho 0.5: -min(0.5, 0.8) = -0.5        A=-1, rho 0.5: -min(-0.5, -0.8) = 0.8
    # A=2, rho 1.1 (inside): -2.2
    assert out.tolist() == pytest.approx([-1.28, 1.5, -0.5, 0.8, -2.2], abs=1e-6)


def test_ppo_clip_gradients_vanish_where_the_clipped_term_is_picked():
    rhos = [1.5, 1.5, 0.5, 0.5, 1.1]
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0, 2.0])
    logp = torch.tensor([[math.log(r)] for r in rhos], requires_grad=True)
    ppo_clip(logp, torch.zeros(5, 1), adv, CFG).sum().backward()
    # unclipped term -rho * A has d/dlogp = -rho * A; the clipped one is constant
    # A=+1 rho 1.5: clipped -> 0          A=-1 rho 1.5: -1.5 * -1 = 1.5
    # A=+1 rho 0.5: -0.5 * 1 = -0.5       A=-1 rho 0.5: clipped -> 0
    # A=2 rho 1.1: -1.1 * 2 = -2.2
    assert logp.grad.squeeze(1).tolist() == pytest.approx([0.0, 1.5, -0.5, 0.0, -2.2], abs=1e-6)


def test_one_epoch_gradient_is_minus_advantage_over_the_normaliser():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -0.1, -0.2]], requires_grad=True)
    adv = torch.tensor([1.5, -0.5])
    cfg = ObjectiveConfig(kl_beta=0.0)
    loss, info = policy_gradient_loss(logp, logp.detach(), torch.zeros(2, 3), adv, 4.0, cfg)
    # loss = sum(-A per token) / 4 = (3 * -1.5 + 3 * 0.5) / 4 = -3 / 4 = -0.75
    assert loss.item() == pytest.approx(-0.75)
    assert info["surrogate"] == pytest.approx(-0.75)
    loss.backward()
    # d/dlogp = -A / 4: row 0 -> -0.375, row 1 -> 0.125
    assert logp.grad.flatten().tolist() == pytest.approx([-0.375] * 3 + [0.125] * 3)


def test_policy_gradient_loss_with_kl_term():
    logp = torch.tensor([[0.0, -1.0]], requires_grad=True)
    ref = torch.tensor([[1.0, -1.0]])
    adv = torch.tensor([2.0])
    cfg = ObjectiveConfig(kl_beta=0.5)
    loss, info = policy_gradient_loss(logp, logp.detach(), ref, adv, 2.0, cfg)
    # surrogate: -2 per token, sum -4; k3: d = 1 -> e - 2, d = 0 -> 0; sum e - 2
    # loss = (-4 + 0.5 (e - 2)) / 2 = -2 + (e - 2) / 4 = -1.8204295
    assert loss.item() == pytest.approx(-2 + (math.e - 2) / 4, abs=1e-6)
    assert info["surrogate"] == pytest.approx(-2.0)
    assert info["kl"] == pytest.approx((math.e - 2) / 2, abs=1e-6)  # token mean of k3
    loss.backward()
    # grad = (-A + beta (1 - e^d)) / 2: token 0 (-2 + 0.5 (1 - e)) / 2 = -1 + (1 - e) / 4; token 1 -2 / 2 = -1
    assert logp.grad.flatten().tolist() == pytest.approx([-1 + (1 - math.e) / 4, -1.0], abs=1e-6)


def test_policy_gradient_loss_on_an_empty_batch_and_bad_normaliser():
    empty = torch.zeros(0, 3)
    loss, info = policy_gradient_loss(empty, empty, empty, torch.zeros(0), 1.0, CFG)
    assert loss.item() == 0.0 and info == {"surrogate": 0.0, "kl": 0.0}
    x = torch.zeros(1, 3)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError):
            policy_gradient_loss(x, x, x, torch.ones(1), bad, CFG)


def test_zero_advantages_give_only_the_kl_gradient():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, _ = policy_gradient_loss(logp, logp.detach(), logp.detach(), torch.zeros(1), 1.0, CFG)
    loss.backward()
    # A = 0 and ref = logp: surrogate 0, k3 0, gradient 0 (an all-zero group teaches nothing)
    assert loss.item() == 0.0 and logp.grad.tolist() == [[0.0, 0.0]]


def test_pairwise_logistic_value_and_gradient_at_zero_margin():
    pos = torch.tensor([-1.0], requires_grad=True)
    neg = torch.tensor([-2.0], requires_grad=True)
    cfg = ObjectiveConfig(logistic_tau=3.0)
    # margin = (-1 - -1) - (-2 - -2) = 0: loss = log 2 / normaliser 2 = .3465736
    loss, info = pairwise_logistic_loss(pos, torch.tensor([-1.0]), neg, torch.tensor([-2.0]), 2.0, cfg)
    assert loss.item() == pytest.approx(math.log(2) / 2, abs=1e-6)
    assert info == {"surrogate": pytest.approx(math.log(2) / 2, abs=1e-6), "kl": 0.0}
    loss.backward()
    # d/dm -log sigma(tau m) = -tau sigma(-tau m) = -tau / 2 at m = 0 -> -3 / 2 / 2 = -0.75; negative +0.75
    assert pos.grad.item() == pytest.approx(-0.75)
    assert neg.grad.item() == pytest.approx(0.75)


def test_pairwise_logistic_sums_pairs_and_is_self_limiting():
    pos = torch.tensor([0.0, -1.0], requires_grad=True)
    neg = torch.tensor([0.0, -1.0], requires_grad=True)
    zero = torch.zeros(2)
    # pair 0: margin (0 - 0) - (0 - 0) = 0 -> log 2; pair 1: margin (-1 - 0) - (-1 - (-3)) = -3 -> log(1 + e^3)
    ref_neg = torch.tensor([0.0, -3.0])
    loss, _ = pairwise_logistic_loss(pos, zero, neg, ref_neg, 1.0, ObjectiveConfig())
    assert loss.item() == pytest.approx(math.log(2) + math.log(1 + math.e**3), abs=1e-5)
    loss.backward()
    # grad on pos = -sigma(-m): pair 0 -> -0.5; pair 1 -> -1 / (1 + e^-3) = -.9525741
    assert pos.grad.tolist() == pytest.approx([-0.5, -1 / (1 + math.exp(-3))], abs=1e-6)
    # far ahead (margin 20): gradient -sigma(-20) = -2.06e-9, i.e. it fades
    p = torch.tensor([0.0], requires_grad=True)
    far, _ = pairwise_logistic_loss(p, torch.zeros(1), torch.tensor([-20.0]), torch.zeros(1), 1.0, ObjectiveConfig())
    far.backward()
    assert abs(p.grad.item()) < 1e-8


def test_pairwise_logistic_rejects_a_bad_normaliser():
    z = torch.zeros(1)
    for bad in (0.0, -2.0):
        with pytest.raises(ValueError):
            pairwise_logistic_loss(z, z, z, z, bad, CFG)


def pairs(pos, neg, weight, hinge, margin):
    return PairBatch(torch.tensor(pos), torch.tensor(neg), torch.tensor(weight), torch.tensor(hinge),
                     torch.tensor(margin))  # fmt: skip


def test_hinge_pushes_the_anchor_up_and_the_boundary_down_until_it_is_inside():
    # rows: 0 anchor (seq -6), 1 the W-th candidate (seq -3); hinge margin .5, weight .25
    logp = torch.tensor([[-2.0, -4.0], [-1.0, -2.0]], requires_grad=True)
    batch = pairs([0], [1], [0.25], [True], [0.5])
    loss, info = actor_loss(logp, logp.detach(), logp.detach(), torch.zeros(2), batch, 2.0, CFG)
    # .25 * relu(.5 - (-6 + 3)) = .25 * 3.5 = .875, / 2 = .4375 (k3 0 at the reference)
    assert loss.item() == pytest.approx(0.4375) and info["surrogate"] == pytest.approx(0.4375)
    loss.backward()
    # d/d(anchor tokens) = -.25 / 2 = -.125: a step against the gradient raises the anchor; the boundary falls
    assert logp.grad.flatten().tolist() == pytest.approx([-0.125, -0.125, 0.125, 0.125])
    # inside the list by more than the margin: exactly no gradient (the hinge stopped)
    inside = torch.tensor([[-0.5, -0.5], [-1.0, -2.0]], requires_grad=True)
    loss, _ = actor_loss(inside, inside.detach(), inside.detach(), torch.zeros(2), batch, 2.0, CFG)
    loss.backward()
    assert loss.item() == 0.0 and inside.grad.abs().sum().item() == 0.0


def test_weighted_logistic_pairs_share_the_positive_and_add_to_the_policy_gradient():
    # rows: 0 p* (seq -3), 1 and 2 negatives above it; at the reference every margin is 0
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.5], [-1.0, -1.0]], requires_grad=True)
    batch = pairs([0, 0], [1, 2], [0.75, 0.25], [False, False], [0.0, 0.0])
    adv = torch.tensor([1.0, 0.0, 0.0])  # a PG term on p* as well: -1 per token
    loss, _ = actor_loss(logp, logp.detach(), logp.detach(), adv, batch, 4.0, CFG)
    # (-2 + (.75 + .25) log 2) / 4
    assert loss.item() == pytest.approx((-2 + math.log(2)) / 4, abs=1e-6)
    loss.backward()
    # p*: (-1 - (.75 + .25) * .5) / 4 = -.375 per token; negatives: +.75 * .5 / 4 = .09375, +.25 * .5 / 4 = .03125
    assert logp.grad.flatten().tolist() == pytest.approx([-0.375] * 2 + [0.09375] * 2 + [0.03125] * 2)
    flipped = pairs([1, 2], [0, 0], [0.75, 0.25], [False, False], [0.0, 0.0])  # a swapped pair must not pass
    logp.grad = None
    actor_loss(logp, logp.detach(), logp.detach(), adv, flipped, 4.0, CFG)[0].backward()
    assert logp.grad[1].tolist() != pytest.approx([0.09375] * 2)


def test_actor_loss_without_pairs_equals_the_policy_gradient_loss():
    logp = torch.tensor([[0.0, -1.0]], requires_grad=True)
    ref = torch.tensor([[1.0, -1.0]])
    cfg = ObjectiveConfig(kl_beta=0.5)
    a, _ = actor_loss(logp, logp.detach(), ref, torch.tensor([2.0]), PairBatch.empty(), 2.0, cfg)
    b, _ = policy_gradient_loss(logp, logp.detach(), ref, torch.tensor([2.0]), 2.0, cfg)
    assert a.item() == pytest.approx(b.item())
