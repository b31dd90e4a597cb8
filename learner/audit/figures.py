"""The audit's figures for one refresh, per segment: pure (plain dataclasses in, a JSON-ready dict out).

For each dimension of :mod:`recast.segments` (request, history, category) and each of its segments:

- over the run's **training reward groups** (what the RL step learned from): ``groups``; ``all_zero``,
  the share whose served list earned nothing; ``repaired``, the share the RL step repaired at least once
  (an organic positive injected into an all-zero rollout of its context); ``unrepairable``, the share it
  found all-zero with nothing to inject; ``repairs`` and the anchor-source mix (counts and shares);
  ``reward_mean``, the mean over groups of each group's mean served reward;
- over the **gate's held-out slice** (never trained on): the served ranking's HR@10, NDCG@10 and Pass@1
  under the parent and the child, the paired difference and a 95% bootstrap interval of it;
- **exposure** of the slice's served top-10 lists before (parent) and after (child): the share of
  impressions that go to the 1% most exposed items (the top 1% of the catalogue by impressions, over all
  segments, under that model), catalogue coverage, and the Gini coefficient of item exposure over the
  whole catalogue;
- **disparity**: the segment's repaired share and its ΔHR@10 against the whole run's; a segment is *flagged*
  when either gap exceeds ``threshold`` and rests on enough data: ``min_groups`` training groups for the
  repaired share, ``min_rows`` slice rows for ΔHR@10 (the gate's own minimum: on a few rows one hit moves
  it by more than any threshold). A gap past the threshold on too little data is reported, not flagged.

Per-group figures, gaps and ratios come from Fairlearn's ``MetricFrame``: each metric is a function of
row indices into plain columns, so one frame per dimension gives every figure at once. The intervals do
not: MetricFrame's bootstrap (``n_boot``) rebuilds the whole frame for every resample (about 45 ms each
on this machine, so minutes per refresh for 1,000 resamples of three dimensions), and it resamples the
whole slice, so a small segment's interval mixes resamples where it has a handful of rows or none.
Each segment's interval is instead the paired bootstrap over the segment's own rows that the gate uses
(:func:`recast.metrics.paired_bootstrap`, seeded), so the run's overall interval is the gate's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from fairlearn.metrics import MetricFrame

from recast.metrics import paired_bootstrap
from recast.segments import DIMENSIONS
from recast.signals.groups import ANCHOR_SOURCES

METRICS = ("HR@10", "NDCG@10", "Pass@1")
TOP_SHARE = 0.01  # "the most popular items": the top 1% of the catalogue


@dataclass(frozen=True)
class AuditConfig:
    threshold: float = 0.1  # a gap beyond this flags a segment
    min_groups: int = 20  # fewer training groups: the repaired-share gap is reported, never flagged
    min_rows: int = 30  # fewer slice rows: the ΔHR@10 gap is reported, never flagged
    resamples: int = 1000  # bootstrap resamples of the metric intervals
    seed: int = 0


@dataclass(frozen=True)
class GroupFacts:
    """A training reward group as the audit sees it."""

    request_id: str
    segments: dict[str, str]  # dimension -> segment
    rewards: tuple[float, ...]  # one per served item
    unrepairable: bool = False  # the RL step met it all-zero with no anchor to inject


@dataclass(frozen=True)
class RepairFacts:
    request_id: str  # the reward group repaired
    anchor_source: str


@dataclass(frozen=True)
class SliceRow:
    """A row of the gate's window slice: the target's 0-based rank in each model's served top 10 (None: not in
    it) and the lists themselves."""

    segments: dict[str, str]
    parent_rank: int | None
    child_rank: int | None
    parent_items: tuple[int, ...] = ()
    child_items: tuple[int, ...] = ()


@dataclass
class _Columns:
    """Per-row values a MetricFrame's metrics index into."""

    values: dict[str, np.ndarray] = field(default_factory=dict)

    def mean(self, name: str) -> Callable:
        column = self.values[name]
        return lambda rows, _: float(column[np.asarray(rows, dtype=int)].mean()) if len(rows) else math.nan


def gain(rank: int | None, metric: str) -> float:
    """One row's HR@10 / NDCG@10 / Pass@1 from the target's 0-based rank.

    >>> [gain(0, "Pass@1"), gain(3, "HR@10"), round(gain(3, "NDCG@10"), 4), gain(None, "HR@10")]
    [1.0, 1.0, 0.4307, 0.0]
    """
    if rank is None:
        return 0.0
    if metric == "Pass@1":
        return float(rank == 0)
    if rank >= 10:
        return 0.0
    return 1.0 / math.log2(rank + 2) if metric.startswith("NDCG") else 1.0


def gini(counts: Sequence[float]) -> float:
    """Gini coefficient of exposure counts (0: every item equally exposed; near 1: one item gets everything).

    >>> gini([1, 1, 1, 1]), gini([0, 0, 0, 4]), gini([0, 0])
    (0.0, 0.75, 0.0)
    """
    x = np.sort(np.asarray(counts, dtype=float))
    n, total = len(x), float(x.sum())
    if n == 0 or total == 0:
        return 0.0
    return float(2.0 * np.sum(np.arange(1, n + 1) * x) / (n * total) - (n + 1) / n)


def popular_items(lists: Sequence[Sequence[int]], catalog_size: int) -> set[int]:
    """The ``ceil(1%)`` of the catalogue with the most impressions in ``lists`` (ties: the lower position)."""
    counts = Counter(i for items in lists for i in items)
    top = max(1, math.ceil(TOP_SHARE * catalog_size))
    return {i for i, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]}


def exposure(lists: Sequence[Sequence[int]], catalog_size: int, popular: set[int]) -> dict:
    """Top-1% share, coverage and Gini of the impressions in ``lists`` (``popular``: :func:`popular_items`)."""
    counts = Counter(i for items in lists for i in items)
    total = sum(counts.values())
    if total == 0:
        return {"impressions": 0, "top1_share": None, "coverage": 0.0, "gini": 0.0}
    padded = list(counts.values()) + [0] * (catalog_size - len(counts))
    return {"impressions": total, "top1_share": sum(counts[i] for i in popular) / total,
            "coverage": len(counts) / catalog_size, "gini": gini(padded)}  # fmt: skip


def _group_frame(groups: list[GroupFacts], repaired: Counter, dimension: str) -> MetricFrame:
    columns = _Columns({
        "all_zero": np.array([not any(r > 0 for r in g.rewards) for g in groups], dtype=float),
        "repaired": np.array([repaired[g.request_id] > 0 for g in groups], dtype=float),
        "unrepairable": np.array([g.unrepairable for g in groups], dtype=float),
        "reward_mean": np.array([sum(g.rewards) / len(g.rewards) if g.rewards else 0.0 for g in groups]),
    })  # fmt: skip
    rows = np.arange(len(groups))
    return MetricFrame(metrics={name: columns.mean(name) for name in columns.values}, y_true=rows, y_pred=rows,
                       sensitive_features=[g.segments[dimension] for g in groups])  # fmt: skip


def _metric_frame(rows: list[SliceRow], dimension: str) -> MetricFrame:
    """Parent, child and paired delta of every metric (``"HR@10 parent"``, ...), by the dimension's segments."""
    columns = _Columns()
    for metric in METRICS:
        parent = np.array([gain(r.parent_rank, metric) for r in rows])
        child = np.array([gain(r.child_rank, metric) for r in rows])
        columns.values |= {f"{metric} parent": parent, f"{metric} child": child, f"{metric} delta": child - parent}
    index = np.arange(len(rows))
    return MetricFrame(metrics={name: columns.mean(name) for name in columns.values}, y_true=index, y_pred=index,
                       sensitive_features=[r.segments[dimension] for r in rows])  # fmt: skip


def _sources(repairs: list[RepairFacts]) -> dict:
    counts = Counter(r.anchor_source for r in repairs)
    total = sum(counts.values())
    return {"counts": {s: counts.get(s, 0) for s in ANCHOR_SOURCES},
            "shares": {s: (counts.get(s, 0) / total if total else 0.0) for s in ANCHOR_SOURCES}}  # fmt: skip


def _metrics_of(frame: MetricFrame, rows: list[SliceRow], segment: str | None, config: AuditConfig) -> dict:
    """One segment's (``segment=None``: the whole slice's) metric figures; ``rows``: that segment's rows."""
    values = frame.overall if segment is None else frame.by_group.loc[segment]
    out = {}
    for metric in METRICS:
        child = [gain(r.child_rank, metric) for r in rows]
        _, low, high = paired_bootstrap(child, [gain(r.parent_rank, metric) for r in rows], config.resamples,
                                        config.seed)  # fmt: skip
        out[metric] = {"rows": len(rows), "parent": float(values[f"{metric} parent"]),
                       "child": float(values[f"{metric} child"]), "delta": float(values[f"{metric} delta"]),
                       "low": low, "high": high}  # fmt: skip
    return out


def audit_figures(groups: list[GroupFacts], repairs: list[RepairFacts], rows: list[SliceRow], catalog_size: int,
                  config: AuditConfig) -> dict:  # fmt: skip
    """Every figure of the module docstring: ``{"config", "overall", "segments": [...], "flagged": [...]}``."""
    by_id = {g.request_id: g for g in groups}
    strangers = sorted({r.request_id for r in repairs} - set(by_id))
    if strangers:
        raise ValueError(f"repairs of groups the run did not train on: {strangers[:5]}")
    repaired = Counter(r.request_id for r in repairs)
    popular = (popular_items([r.parent_items for r in rows], catalog_size),
               popular_items([r.child_items for r in rows], catalog_size))
    overall: dict = {}
    segments, largest_gap = [], {}
    for dimension in DIMENSIONS:
        frame = _group_frame(groups, repaired, dimension) if groups else None
        metric_frame = _metric_frame(rows, dimension) if rows else None
        if not overall:
            overall = _entry(frame, metric_frame, None, groups, repairs, rows, popular, catalog_size, config)
        if frame is not None:
            largest_gap[dimension] = float(frame.difference(method="to_overall")["repaired"])
        names = sorted({g.segments[dimension] for g in groups} | {r.segments[dimension] for r in rows})
        for name in names:
            mine = [g for g in groups if g.segments[dimension] == name]
            entry = _entry(frame, metric_frame, name, mine,
                           [r for r in repairs if by_id[r.request_id].segments[dimension] == name],
                           [r for r in rows if r.segments[dimension] == name], popular, catalog_size, config)
            entry["disparity"] = _disparity(entry, overall, config)
            segments.append({"dimension": dimension, "segment": name, **entry})
    flagged = [f"{s['dimension']}:{s['segment']}" for s in segments if s["disparity"]["flagged"]]
    return {"config": asdict(config), "catalog_size": catalog_size, "overall": overall,
            "largest_repaired_gap": largest_gap, "segments": segments, "flagged": flagged}  # fmt: skip


def _entry(frame: MetricFrame | None, metric_frame: MetricFrame | None, segment: str | None,
           groups: list[GroupFacts], repairs: list[RepairFacts], rows: list[SliceRow], popular: tuple[set, set],
           catalog_size: int, config: AuditConfig) -> dict:  # fmt: skip
    """The figures of one segment (``segment=None``: the whole run) from the dimension's frames."""
    shares = {"all_zero": None, "repaired": None, "unrepairable": None, "reward_mean": None, "repaired_ratio": None}
    if frame is not None and (segment is None or segment in frame.by_group.index):
        values = frame.overall if segment is None else frame.by_group.loc[segment]
        shares = {k: float(values[k]) for k in ("all_zero", "repaired", "unrepairable", "reward_mean")}
        overall = float(frame.overall["repaired"])
        shares["repaired_ratio"] = float(values["repaired"]) / overall if overall else None
    return {
        "groups": len(groups), **shares, "repairs": len(repairs), "anchor_sources": _sources(repairs),
        "slice_rows": len(rows), "metrics": _metrics_of(metric_frame, rows, segment, config) if rows else {},
        "exposure": {"before": exposure([r.parent_items for r in rows], catalog_size, popular[0]),
                     "after": exposure([r.child_items for r in rows], catalog_size, popular[1])},
    }  # fmt: skip


def _disparity(entry: dict, overall: dict, config: AuditConfig) -> dict:
    """The segment's repaired share and ΔHR@10 against the run's; a gap past the threshold flags the segment when
    it rests on enough groups (repaired share) or slice rows (ΔHR@10), and is only reported otherwise."""
    repaired_gap = None if entry["repaired"] is None else entry["repaired"] - overall["repaired"]
    hr = entry["metrics"].get("HR@10")
    hr_gap = None if hr is None else hr["delta"] - overall["metrics"]["HR@10"]["delta"]
    checks = [("repaired share", repaired_gap, entry["groups"], config.min_groups, "groups"),
              ("ΔHR@10", hr_gap, entry["slice_rows"], config.min_rows, "slice rows")]  # fmt: skip
    flags, held = [], []
    for name, gap, have, need, unit in checks:
        if gap is None or abs(gap) <= config.threshold:
            continue
        text = f"{name} {gap:+.3f} against the run"
        if have >= need:
            flags.append(text)
        else:
            held.append(f"{text} (not flagged: {have} {unit}, fewer than {need})")
    value = max((abs(g) for _, g, *_ in checks if g is not None), default=0.0)
    return {"repaired_gap": repaired_gap, "hr10_gap": hr_gap, "value": value, "flagged": bool(flags),
            "reason": "; ".join(flags + held)}  # fmt: skip
