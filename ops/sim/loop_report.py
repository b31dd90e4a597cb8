"""The loop's day-by-day table and plot, and the policy-alone figures of what each day served.

Served HR@10 comes from the shoppers' own actions (the chosen item was on the list). The policy-alone
HR@10 and Pass@1 re-rank each day's visits offline with the policy of the version that served most of
that day's lists, so an arm's learning is seen on exactly the traffic it served.
"""

from __future__ import annotations

from pathlib import Path

from ops.sim.loop import LoopResult
from ops.sim.shoppers import Visit


def day_table(result: LoopResult) -> str:
    head = (f"{'day':>3}  {'served by':<14}{'visits':>7}{'HR@10':>7}{'all-zero':>9}{'repaired':>9}  "
            f"{'refresh':<10}{'new model':<14}reason")  # fmt: skip
    lines = [head, "-" * len(head)]
    for day in result.days:
        version = max(day.versions, key=day.versions.get) if day.versions else "-"
        if len(day.versions) > 1:
            version += "+"
        r = day.refresh or {}
        repaired = (r.get("counts") or {}).get("rl_repaired")
        decision = r.get("decision") or r.get("status") or "off"
        lines.append(
            f"{day.day:>3}  {version:<14}{day.visits:>7}{day.hits / max(day.visits, 1):>7.3f}"
            f"{_fmt(day.all_zero):>9}{_fmt(repaired):>9}  {decision:<10}{r.get('version') or '-':<14}"
            f"{(r.get('reason') or '')[:90]}"
        )
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def plot(result: LoopResult, path: Path, title: str = "the closed loop, day by day") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [d.day for d in result.days]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    hr = [d.hits / max(d.visits, 1) for d in result.days]
    bars = top.bar(days, hr, color="#4c72b0")
    for bar, day in zip(bars, result.days):
        version = max(day.versions, key=day.versions.get) if day.versions else "-"
        top.annotate(version[:8], (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                     va="bottom", fontsize=8)  # fmt: skip
    top.set_ylabel("served HR@10 (shoppers)")
    top.set_title(title)
    bottom.plot(days, [d.all_zero or 0.0 for d in result.days], "o-", label="all-zero share of the day's groups")
    repaired = [((d.refresh or {}).get("counts") or {}).get("rl_repaired") for d in result.days]
    if any(r is not None for r in repaired):
        bottom.plot(days, [r or 0.0 for r in repaired], "s--", label="repaired share (the night's RL step)")
    for day in result.days:
        decision = (day.refresh or {}).get("decision") or (day.refresh or {}).get("status")
        if decision:
            bottom.annotate(decision, (day.day, 0.02), ha="center", fontsize=8, rotation=90)
    bottom.set_ylim(0, 1)
    bottom.set_xlabel("day (each night's refresh decides what serves the next day)")
    bottom.set_xticks(days)
    bottom.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def policy_ranks(result: LoopResult, days: list[list[Visit]], paths: dict[str, str], data_dir: Path,
                 beams: int = 50) -> list[list[int | None]]:  # fmt: skip
    """Per day, the chosen item's rank under the policy alone of the version that served most of the day."""
    from recast.checkpoint import load_checkpoint
    from recast.dataset import load_catalog
    from recast.metrics import rank_of
    from recast.recommender import Recommender

    catalog = load_catalog(data_dir)
    cache: dict[str, Recommender] = {}
    out = []
    for day, visits in zip(result.days, days):
        version = max(day.versions, key=day.versions.get)
        if version not in cache:
            cache[version] = Recommender.from_checkpoint(load_checkpoint(paths[version]), beams)
        rec, ranks = cache[version], []
        for start in range(0, len(visits), 64):
            chunk = visits[start : start + 64]
            beam = rec.policy([[catalog.index[i] for i in v.history] for v in chunk])
            for row, visit in enumerate(chunk):
                ranks.append(rank_of(catalog.index[visit.chosen], [i for i, _ in beam.top(row, 10)]))
        out.append(ranks)
    return out
