"""The evaluation gate: the candidate against the served model, on the same rows, before anything serves it.

Two slices are scored: the window's held-out slice (the latest groups by event time; each row is
a logged context and its strongest positive, never trained on) and the fixed offline split (users
no model trains on). On each, both models rank every row twice, as the policy alone and as the
served ranking, and the paired per-row differences of HR@10, NDCG@10 and Pass@1 get a mean and a
95% bootstrap interval.

The rule: the candidate is published unless, on some slice with at least ``gate_min_rows`` rows,
the mean paired difference of the *served* ranking's HR@10 or NDCG@10 (what storefronts get) is
below ``-gate_tolerance``. A smaller slice is reported, not gated: on twenty rows one hit decides.
Before any of that the candidate must pass the checkpoint checks: every file against its manifest,
a load, and a warm decode.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from recast.checkpoint import CheckpointError, load_checkpoint
from recast.metrics import paired_bootstrap, per_entry_scores, rank_of
from recast.recommender import Recommender

GATED = ("HR@10", "NDCG@10")
REPORTED = ("HR@10", "NDCG@10", "Pass@1")


@dataclass(frozen=True)
class Slice:
    name: str
    histories: list[list[int]]
    targets: list[int]

    def fingerprint(self) -> str:
        raw = json.dumps([self.histories, self.targets], separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


@dataclass
class GateResult:
    publish: bool
    reason: str
    slices: dict = field(default_factory=dict)  # name -> {rows, gated, <ranking>: {metric: {...}}}
    ranks: dict = field(default_factory=dict)  # name -> {"current": ranks(), "candidate": ranks()}


def check_checkpoint(path: Path) -> Recommender:
    """Hashes, load and a warm decode; raises :class:`CheckpointError` with the reason."""
    ckpt = load_checkpoint(path)
    recommender = Recommender.from_checkpoint(ckpt, beam_width=10)
    served = recommender.recommend([[0]], k=10)[0]
    if len(served) != 10 or len({i for i, _ in served}) != 10:
        raise CheckpointError(f"{path}: a warm decode returned {len(served)} items, not 10 distinct ones")
    return recommender


def ranks(recommender: Recommender, rows: Slice, batch_size: int = 64) -> dict[str, list]:
    """The target's rank per row under the policy alone and under the served ranking (top 10 is enough), and
    the served top-10 lists themselves (``lists``: what the audit measures exposure on)."""
    out: dict[str, list] = {"policy": [], "served": [], "lists": []}
    for start in range(0, len(rows.targets), batch_size):
        histories = rows.histories[start : start + batch_size]
        beams = recommender.policy(histories)
        served = recommender.rank(histories, beams, 10)
        for row, target in enumerate(rows.targets[start : start + batch_size]):
            out["policy"].append(rank_of(target, [i for i, _ in beams.top(row, 10)]))
            out["served"].append(rank_of(target, [i for i, _ in served[row]]))
            out["lists"].append([i for i, _ in served[row]])
    return out


def compare(current: dict, candidate: dict, resamples: int, seed: int = 0) -> dict:
    """Per ranking and metric: both means, the paired difference and its 95% interval."""
    out = {}
    for ranking in ("policy", "served"):
        out[ranking] = {}
        for metric in REPORTED:
            a, b = per_entry_scores(candidate[ranking], metric), per_entry_scores(current[ranking], metric)
            if not a:
                continue
            delta, low, high = paired_bootstrap(a, b, resamples=resamples, seed=seed)
            out[ranking][metric] = {"current": sum(b) / len(b), "candidate": sum(a) / len(a),
                                    "delta": delta, "low": low, "high": high}  # fmt: skip
    return out


def decide(slices: dict, tolerance: float, min_rows: int) -> tuple[bool, str]:
    """Apply the rule of the module docstring to :func:`compare`'s figures per slice."""
    worse, gated = [], []
    for name, figures in slices.items():
        if figures["rows"] < min_rows:
            continue
        gated.append(name)
        for metric in GATED:
            d = figures["served"][metric]["delta"]
            if d < -tolerance:
                worse.append(f"served {metric} on {name} {d:+.4f} < {-tolerance:+g}")
    if not gated:
        return False, f"no slice has the {min_rows} scored rows the gate needs"
    if worse:
        return False, "below the bar against the served model: " + "; ".join(worse)
    summary = ", ".join(f"{n}: ΔHR@10 {slices[n]['served']['HR@10']['delta']:+.4f}" for n in gated)
    return True, f"not worse beyond {tolerance:g} ({summary})"
