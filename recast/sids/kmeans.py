"""k-means for the residual quantiser: seeded, deterministic, and with one exact nearest-codeword rule.

Lloyd's algorithm from a k-means++ start (each next centre drawn with probability proportional to the
squared distance to the nearest chosen one, from an explicit ``torch.Generator``). A cluster left empty
is moved to the point farthest from its centre (the largest error), so every codeword is used after
the fit whenever there are at least ``k`` distinct points. ``spherical``: the points are unit vectors
and the centres are kept unit length (k-means by cosine).

:func:`nearest` is the only rule that turns vectors into codes, in the fit and for new items alike:
it computes each distance elementwise, row by row, so a vector's code does not depend on which other
vectors were encoded with it (a matrix product's blocking could break a near tie differently), and
ties go to the lowest index.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

CHUNK = 256  # rows per distance block in nearest(): bounds memory at CHUNK * k * d floats


def nearest(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(N,) index of the nearest centre (squared Euclidean distance) for each row of ``points``.

    >>> nearest(torch.tensor([[0.0], [0.9], [2.0], [0.5]]), torch.tensor([[0.0], [1.0], [1.0]])).tolist()
    [0, 1, 1, 0]
    """
    out = torch.empty(points.shape[0], dtype=torch.long)
    for start in range(0, points.shape[0], CHUNK):
        block = points[start : start + CHUNK]
        distance = (block.unsqueeze(1) - centres.unsqueeze(0)).pow(2).sum(dim=2)  # (b, k)
        out[start : start + CHUNK] = distance.argmin(dim=1)  # argmin returns the first of equal minima
    return out


def _squared_distances(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    # Fast form for Lloyd's iterations; the final codes come from nearest().
    return (points.pow(2).sum(1, keepdim=True) - 2 * points @ centres.T + centres.pow(2).sum(1)).clamp(min=0)


def kmeans_plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """(k, d) starting centres. Fewer than ``k`` distinct points: the rest repeat points, drawn uniformly."""
    n = points.shape[0]
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    closest = _squared_distances(points, points[chosen]).squeeze(1)
    for _ in range(1, k):
        weights = closest if closest.sum() > 0 else torch.ones(n)
        index = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(index)
        closest = torch.minimum(closest, _squared_distances(points, points[index : index + 1]).squeeze(1))
    return points[chosen].clone()


def kmeans(
    points: torch.Tensor,
    k: int,
    generator: torch.Generator,
    iterations: int = 50,
    on_iteration: Callable[[], None] | None = None,
    spherical: bool = False,
) -> torch.Tensor:
    """(k, d) centres of ``points`` (N, d) after at most ``iterations`` Lloyd steps (fewer once no point
    changes cluster). ``on_iteration`` is called once per step that ran, and for each one skipped, so a
    progress bar always advances by ``iterations``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if points.shape[0] == 0:
        raise ValueError("k-means needs at least one point")
    centres = kmeans_plus_plus(points, k, generator)
    assign = None
    for step in range(iterations):
        distance = _squared_distances(points, centres)
        new_assign = distance.argmin(dim=1)
        if assign is not None and torch.equal(new_assign, assign):
            for _ in range(step, iterations):
                if on_iteration:
                    on_iteration()
            break
        assign = new_assign
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, assign, points)
        centres = torch.where(counts.unsqueeze(1) > 0, sums / counts.clamp(min=1).unsqueeze(1), centres)
        if spherical:
            centres = torch.nn.functional.normalize(centres, dim=1)
        error = distance.gather(1, assign.unsqueeze(1)).squeeze(1).clone()
        for empty in torch.nonzero(counts == 0).flatten().tolist():
            farthest = int(error.argmax())
            if error[farthest] <= 0:
                break  # every point sits on a centre: fewer distinct points than k
            centres[empty] = points[farthest]
            error[farthest] = 0
        if on_iteration:
            on_iteration()
    return centres
