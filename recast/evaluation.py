"""Offline evaluation: the policy, the served (fused) ranking and two baselines on one split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from recast.baselines import top_items
from recast.metrics import DEFAULT_KS, rank_of, summarize
from recast.recommender import Recommender


@dataclass
class EvalResult:
    report: dict  # {"policy": metrics, "served": metrics, "baselines": {...}}
    served: list[list[int]]  # per row, the served ranking (catalog positions, best first)
    ranks: dict[str, list[int | None]]  # per ranking name, the target's rank per row


def evaluate(
    recommender: Recommender,
    histories: list[list[int]],
    targets: list[int],
    batch_size: int = 64,
    list_length: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> EvalResult:
    """Rank every row four ways and score the target's position in each.

    ``list_length`` (default: the beam width) is how many items each ranking keeps;
    HR/NDCG need at least max(K) = 10.
    """
    if len(histories) != len(targets):
        raise ValueError("histories and targets differ in length")
    depth = list_length or recommender.beam.width
    if depth < max(DEFAULT_KS):
        raise ValueError(f"list_length must be >= {max(DEFAULT_KS)}")
    popular = top_items(recommender.transition.popularity, depth)
    baselines = ["popularity", "transition"] + (["text"] if recommender.text is not None else [])
    ranks: dict[str, list[int | None]] = {name: [] for name in ["policy", "served", *baselines]}
    served: list[list[int]] = []
    for start in range(0, len(histories), batch_size):
        hist = histories[start : start + batch_size]
        beams = recommender.policy(hist)
        transition = recommender.transition_scores(hist)
        text = recommender.text_scores(hist)
        fused = recommender.rank(hist, beams, depth, transition, text)
        for row, target in enumerate(targets[start : start + batch_size]):
            policy_list = [i for i, _ in beams.top(row, depth)]
            served_list = [i for i, _ in fused[row]]
            transition_list = top_items(transition[row], depth)
            ranks["policy"].append(rank_of(target, policy_list))
            ranks["served"].append(rank_of(target, served_list))
            ranks["popularity"].append(rank_of(target, popular))
            ranks["transition"].append(rank_of(target, transition_list))
            if text is not None:
                ranks["text"].append(rank_of(target, top_items(text[row], depth)))
            served.append(served_list)
        if on_batch is not None:
            on_batch(len(hist))
    report = {
        "policy": summarize(ranks["policy"]),
        "served": summarize(ranks["served"]),
        "baselines": {name: summarize(ranks[name]) for name in baselines},
        "beam_width": recommender.beam.width,
        "fusion": {
            "policy_weight": recommender.fusion.policy_weight,
            "text_weight": recommender.fusion.text_weight,
            "transition_weight": recommender.fusion.transition_weight,
            "temperature": recommender.fusion.temperature,
        },
    }
    if recommender.ranker is not None:  # the served ranking was the ranker's, with this much of the beam blended in
        report["fusion"] = {"ranker": True, "policy_weight": recommender.ranker.policy_weight,
                            "temperature": recommender.fusion.temperature}  # fmt: skip
    return EvalResult(report, served, ranks)
