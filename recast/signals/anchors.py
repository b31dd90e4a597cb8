"""How much a repaired anchor may teach: its reachability and its share of the gradient.

The mechanism probe (BENCHMARKS.md, issue 4) found repaired anchors ~3.6-3.8 nats
below the W-th candidate, supplying 90-94% of the squared gradient norm of a step in
a direction almost orthogonal to the real hits' gradient. Two pure pieces bound that:

* ``reachability``: an anchor's weight falls with its gap below the entry boundary
  (the W-th candidate it displaced): exp(-gap / T), 1 for an anchor at or above it.
  T = 1 is the probability ratio pi(anchor) / pi(W-th) itself.
* ``cap_scale``: the factor on the anchors' gradient that keeps their share of the
  step's squared gradient norm at most ``cap``.
"""

from __future__ import annotations

import math


def reachability(gap: float, temperature: float) -> float:
    """exp(-max(gap, 0) / T); ``temperature`` 0 switches the weighting off (weight 1).

    >>> round(reachability(2.0, 1.0), 4), round(reachability(2.0, 2.0), 4), reachability(-1.0, 1.0)
    (0.1353, 0.3679, 1.0)
    >>> reachability(5.0, 0.0)
    1.0
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return 1.0
    return math.exp(-max(gap, 0.0) / temperature)


def cap_scale(anchor_sq: float, other_sq: float, cap: float) -> float:
    """The factor s in [0, 1] for the anchors' gradient g_a so that
    s^2 |g_a|^2 / (s^2 |g_a|^2 + |g_other|^2) <= cap (1 when it already is).

    Shares are of the *sum of squared norms* of the parts, the figure the probe
    measured; with the near-zero cosine it found, that is the share of |g|^2 too.
    A step with no other gradient gives anchors nothing under a cap below 1.

    >>> cap_scale(9.0, 1.0, 0.5)  # share .9 -> s^2 * 9 = 1: s = 1/3
    0.3333333333333333
    >>> cap_scale(1.0, 9.0, 0.5), cap_scale(4.0, 0.0, 0.5), cap_scale(4.0, 0.0, 1.0)
    (1.0, 0.0, 1.0)
    """
    if not 0.0 <= cap <= 1.0:
        raise ValueError(f"cap must lie in [0, 1], got {cap}")
    if anchor_sq <= 0 or cap >= 1.0:
        return 1.0
    if anchor_sq / (anchor_sq + other_sq) <= cap:
        return 1.0
    # s^2 a = cap (s^2 a + o)  <=>  s^2 = cap o / ((1 - cap) a)
    return math.sqrt(cap * other_sq / ((1.0 - cap) * anchor_sq))
