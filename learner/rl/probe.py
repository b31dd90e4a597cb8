"""After-update probe: what one step did to the lists of the contexts it learned from.

The step's rolled-out candidates (the displaced W-th back in place of an injected
anchor) and its anchors are re-scored by teacher forcing under the updated policy:

* ``top1_change``: share of contexts whose best item is no longer the rollout's top-1
  (the probe found the literal contrast arms change it on ~70% of contexts);
* ``anchors_entering``: share of repaired anchors now above the lowest of the old W
  candidates, i.e. inside the top-W a rollout right after the update would return
  (among the old candidates and the anchor; items from outside the old list are not
  re-scored, so this is the probe's estimate of the next rollout's top-W);
* ``anchor_gap_before`` / ``anchor_gap_after``: mean log-probability of the W-th
  candidate minus the anchor's, before and after the update.
"""

from __future__ import annotations

import statistics

import torch

from recast.beam import score_codes
from recast.signals.groups import RolloutGroup


def rolled_out(group: RolloutGroup) -> list[int]:
    """The members beam search returned, in beam order (repair undone)."""
    items = list(group.items)
    if group.injected is not None and group.displaced is not None:
        items[group.injected] = group.displaced[0]
    return items


@torch.no_grad()
def probe_after_update(policy, trie, prompts: list[list[int]], groups: list[RolloutGroup], codes: torch.Tensor,
                       pad_id: int) -> dict:  # fmt: skip
    keep = [gi for gi, g in enumerate(groups) if g.size > 0]
    if not keep:
        return {"top1_change": None, "anchors_entering": None}
    lists = [rolled_out(groups[gi]) for gi in keep]
    anchors = [groups[gi].items[groups[gi].injected] if groups[gi].injected is not None else None for gi in keep]
    K = max(len(items) for items in lists) + 1
    # (B, K): old candidates, then the anchor; padding repeats the top-1 and is masked out
    table = [items + ([a] if a is not None else []) for items, a in zip(lists, anchors)]
    padded = torch.tensor([row + [row[0]] * (K - len(row)) for row in table], dtype=torch.long)
    valid = torch.tensor([[k < len(row) for k in range(K)] for row in table])
    scores = score_codes(policy, trie, [prompts[gi] for gi in keep], codes[padded], pad_id)  # (B, K)
    scores = scores.masked_fill(~valid, float("-inf"))
    top1_change = (scores.argmax(dim=1) != 0).float().mean().item()
    entering, before, after = [], [], []
    for row, (items, anchor) in enumerate(zip(lists, anchors)):
        if anchor is None:
            continue
        n = len(items)
        boundary = scores[row, :n].min().item()  # the lowest old candidate under the updated policy
        entering.append(scores[row, n].item() > boundary)
        group = groups[keep[row]]
        before.append(group.displaced[1] - group.logprobs[group.injected])
        after.append(boundary - scores[row, n].item())
    return {
        "top1_change": top1_change,
        "anchors_entering": sum(entering) / len(entering) if entering else None,
        "anchor_gap_before": statistics.fmean(before) if before else None,
        "anchor_gap_after": statistics.fmean(after) if after else None,
    }
