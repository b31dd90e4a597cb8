"""Reachability weights and the anchor cap, by hand."""

import math

import pytest

from recast.signals.anchors import cap_scale, reachability


def test_reachability_falls_with_the_gap_below_the_boundary():
    assert reachability(0.0, 1.0) == 1.0
    assert reachability(-2.0, 1.0) == 1.0  # at or above the W-th candidate: full weight
    assert reachability(3.8, 1.0) == pytest.approx(0.022371, abs=1e-6)  # the probe's median gap
    assert reachability(3.8, 2.0) == pytest.approx(math.exp(-1.9))
    assert reachability(1.0, 1.0) > reachability(2.0, 1.0) > reachability(3.0, 1.0)
    assert reachability(9.0, 0.0) == 1.0  # off
    with pytest.raises(ValueError):
        reachability(1.0, -1.0)


def test_cap_scale_brings_the_anchor_share_down_to_the_cap():
    # the probe's step: anchors 92% of the squared norm; cap .25 -> s^2 * 92 / (s^2 * 92 + 8) = .25
    s = cap_scale(92.0, 8.0, 0.25)
    assert s**2 * 92.0 / (s**2 * 92.0 + 8.0) == pytest.approx(0.25)
    assert s == pytest.approx(math.sqrt(0.25 * 8.0 / (0.75 * 92.0)))  # .1702469
    assert cap_scale(1.0, 3.0, 0.25) == 1.0  # exactly at the cap: untouched
    assert cap_scale(0.0, 3.0, 0.25) == 1.0  # no anchor gradient
    assert cap_scale(5.0, 0.0, 0.25) == 0.0  # nothing else to share with
    assert cap_scale(5.0, 1.0, 1.0) == 1.0  # cap 1: off
    with pytest.raises(ValueError):
        cap_scale(1.0, 1.0, 1.5)
