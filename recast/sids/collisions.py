"""Spreading the fitted catalog's colliding items over free last-level codewords.

Near-duplicate items (the same filament in twelve colours) share every nearest codeword, so their SIDs
collide and only the catalog's disambiguation token ``<d_n>``, which means nothing, tells them apart:
fitted without spreading, the shipped catalog's 3,686 items get 2,439 SIDs, 573 of them shared, up to
27 items under one (the shipped SIDs: 15 shared, at most 3 items). At fit time only, items that collide
are moved, within their prefix (the codes of every level but the last), to the nearest last-level
codeword that no item of that prefix holds, as LC-Rec's uniform semantic mapping does for its last
level. The item nearest to the shared codeword keeps it, and an item that does not collide never
moves; a prefix holding more items than the last level has codewords keeps its surplus colliding.

New items (``ItemTokenizer.assign``) are not spread: they get their nearest path, which may collide.
"""

from __future__ import annotations

from collections import defaultdict

import torch


def spread(codes: torch.Tensor, directions: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``codes`` (N, L) with colliding items' last code moved as the module says. ``directions`` (N, d): each
    item's last-level residual direction; ``codebook`` (k, d): the last level's codewords. Deterministic: ties
    go to the earlier row and the lower codeword."""
    out = codes.clone()
    by_prefix: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for row, code in enumerate(codes[:, :-1].tolist()):
        by_prefix[tuple(code)].append(row)
    last = codes[:, -1].tolist()
    for rows in by_prefix.values():
        if len(rows) == len({last[r] for r in rows}):
            continue  # no collision under this prefix
        distance = (directions[rows].unsqueeze(1) - codebook.unsqueeze(0)).pow(2).sum(dim=2)  # (g, k)
        holder: dict[int, int] = {}  # codeword -> the row keeping it: the nearest one
        for j, r in enumerate(rows):
            kept = holder.get(last[r])
            if kept is None or distance[j, last[r]] < distance[rows.index(kept), last[r]]:
                holder[last[r]] = r
        movers = [j for j, r in enumerate(rows) if holder[last[r]] != r]
        taken = set(holder)
        # Every (mover, free codeword) pair, nearest first; each mover takes the first free one it meets.
        candidates = sorted((float(distance[j, c]), j, c) for j in movers for c in range(codebook.shape[0]))
        placed: set[int] = set()
        for _, j, c in candidates:
            if j in placed or c in taken:
                continue
            out[rows[j], -1] = c
            placed.add(j)
            taken.add(c)
            if len(placed) == len(movers):
                break
    return out
