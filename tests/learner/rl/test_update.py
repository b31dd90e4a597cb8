"""The part-by-part actor update on a tiny policy: exact per-part gradients, the anchor cap, the probe,
and every variant of issue 12 training the model."""

import json
from pathlib import Path

import pytest
import torch

from learner.rl.config import preset
from learner.rl.contexts import offline_contexts
from learner.rl.evalset import EvalSet
from learner.rl.trainer import RLTrainer, train_rl
from learner.rl.update import run_parts, split_parts
from recast.checkpoint import load_checkpoint
from recast.dataset import load_catalog, load_interactions
from recast.signals.objective import PairBatch, actor_loss
from recast.signals.strategy import ANCHOR, HIT, REPLAY, ActorPlan, PairTerm

DATA = Path(__file__).resolve().parents[3] / "data" / "amazon18-industrial"


def trainer(files, tmp_path, **overrides) -> RLTrainer:
    sft_dir, rl_csv, _ = files
    catalog = load_catalog(DATA)
    contexts = offline_contexts(load_interactions(rl_csv, catalog), catalog.index, 10)
    replay = offline_contexts(load_interactions(rl_csv.parent / "sft.csv", catalog), catalog.index, 10)
    config = preset("tiny", **overrides)
    return RLTrainer(load_checkpoint(sft_dir), catalog, contexts, EvalSet([], []), config, tmp_path, False, replay)


def mixed_plan() -> tuple[ActorPlan, list[list[int]]]:
    """Hit rows with a logistic pair, anchor rows with a hinge, a replay row: three parts."""
    plan = ActorPlan()
    p, n = plan.add(0, 5, 0.0, HIT), plan.add(0, 9, -0.5, HIT)
    plan.pairs.append(PairTerm(p, n, 0.7, "logistic"))
    a, d = plan.add(1, 40, 0.3, ANCHOR), plan.add(1, 41, 0.0, ANCHOR)
    plan.pairs.append(PairTerm(a, d, 0.4, "hinge", 0.5))
    plan.add(2, 77, 1.0, REPLAY)
    return plan, [[1, 4, 5], [1, 6], [1, 7, 8, 9]]


def grads_of(model) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def test_part_gradients_add_up_to_the_gradient_of_one_pass(files, tmp_path):
    t = trainer(files, tmp_path, method="grpo")
    plan, prompts = mixed_plan()
    parts = split_parts(plan, prompts)
    assert [p.name for p in parts] == [HIT, ANCHOR, REPLAY] and [len(p.items) for p in parts] == [2, 2, 1]
    with torch.no_grad():
        refs = [t.score(t.reference, p.prompts, p.items) for p in parts]
    t.policy.zero_grad(set_to_none=True)
    grads, _ = run_parts(t.policy, parts, refs, [None] * 3, t.score, 8.0, t.config.objective)
    by_parts = grads_of(t.policy)
    assert torch.allclose(sum(grads.values()), by_parts, atol=1e-6)
    # the same loss over every row at once (pairs renumbered into one batch)
    t.policy.zero_grad(set_to_none=True)
    prompts_all = [prompts[r.group] for r in plan.rows]
    items = [r.item for r in plan.rows]
    logp = t.score(t.policy, prompts_all, items)
    with torch.no_grad():
        ref = t.score(t.reference, prompts_all, items)
    pairs = PairBatch(torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([0.7, 0.4]),
                      torch.tensor([False, True]), torch.tensor([0.0, 0.5]))  # fmt: skip
    adv = torch.tensor([r.advantage for r in plan.rows])
    loss, _ = actor_loss(logp, logp.detach(), ref, adv, pairs, 8.0, t.config.objective)
    loss.backward()
    assert torch.allclose(grads_of(t.policy), by_parts, atol=1e-6)
    assert grads[ANCHOR].norm() > 0 and grads[HIT].norm() > 0 and grads[REPLAY].norm() > 0


def test_the_anchor_cap_bounds_the_anchors_share_and_scales_only_their_gradient(files, tmp_path):
    t = trainer(files, tmp_path, method="grpo", signal={"anchor_cap": 0.1})
    plan, prompts = mixed_plan()
    plan.rows[2] = plan.rows[2].__class__(1, 40, 50.0, ANCHOR)  # a huge anchor weight: its share near 1
    update = t.actor_update(prompts, [None] * 3, plan)
    assert update["anchor_share"] > 0.9
    assert update["anchor_share_capped"] == pytest.approx(0.1, abs=1e-6)
    assert 0 < update["anchor_scale"] < 1 and set(update["rows_by_part"]) == {HIT, ANCHOR, REPLAY}
    assert update["anchor_hit_cos"] is not None and -1 <= update["anchor_hit_cos"] <= 1


@pytest.mark.parametrize(
    "method, signal",
    [
        ("recast", {}),
        ("recast-literal", {"hits": "above", "anchors": "boundary", "reach_temperature": 1.0}),  # cap: above
        ("recast-literal", {"hits": "above", "anchors": "supervised", "anchor_weight": 0.25, "replay": 4}),
        ("recast-literal", {"hits": "above", "reward": "structural", "anchors": "supervised"}),
        ("grpo", {"reward": "structural", "repair": True}),
    ],
)
def test_every_variant_trains_the_policy_and_logs_its_diagnostics(files, tmp_path, method, signal):
    sft, rl_csv, eval_csv = files
    config = preset("tiny", method=method, signal=signal, steps=2, lr=1e-2, contexts_per_step=32, width=16)
    replay = rl_csv.parent / "sft.csv"
    result = train_rl(DATA, sft, rl_csv, eval_csv, config, tmp_path, progress=False, replay_csv=replay)
    before = dict(load_checkpoint(sft).model.named_parameters())
    after = dict(load_checkpoint(result.checkpoint).model.named_parameters())
    changed = [name for name, p in after.items() if not torch.equal(p, before[name])]
    assert len(changed) >= len(after) - 2, sorted(set(after) - set(changed))  # all but rarely-hit embeddings
    records = [json.loads(line) for line in (tmp_path / "diagnostics.jsonl").read_text().splitlines()][1:]
    for r in records:
        for key in ("anchor_share", "anchor_hit_cos", "top1_change", "anchors_entering", "probe_s", "flat"):
            assert key in r
        assert 0 <= r["top1_change"] <= 1
        if config.spec.repair and r["repaired"] > 0:
            assert r["anchors_entering"] is not None and r["anchor_gap_before"] is not None


def test_the_structural_reward_reaches_the_groups(files, tmp_path):
    """The tiny policy's lists share first codes; a context rewarded on one member pays its siblings too."""
    from dataclasses import replace

    from recast.signals.reward import structural_rewards

    t = trainer(files, tmp_path, method="grpo", signal={"reward": "structural"}, width=8)
    contexts = t.next_contexts()
    _, groups = t.rollout(contexts, 0)
    target = groups[0].items[1]
    rewarded = [replace(c, positives={target: 1.0}) for c in contexts]
    _, groups = t.rollout(rewarded, 0)
    assert groups[0].rewards[1] == 1.0 and groups[0].hit_mask[1] and groups[0].hits == 1
    for g in groups:
        assert g.rewards == structural_rewards(g.items, {target: 1.0}, t.code_rows)
    assert sum(r in (0.1, 0.01) for g in groups for r in g.rewards) > 0  # graded near misses
