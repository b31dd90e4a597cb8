"""``recast audit --html``: one self-contained HTML file (no network: the plots are PNGs in data URIs).

From the top: the flagged segments of every run in the report (with why), then four plots —
the repaired share per segment across runs, the anchor-source mix per segment, each segment's
metric changes (child − parent on the gate's held-out slice) with their 95% intervals, and
exposure before and after — then the reported run's table. The report is rebuilt from the stored
snapshots, so an old version's report reads what was computed when it was trained.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime
from pathlib import Path

SOURCES = ("organic_purchase", "organic_add_to_cart", "organic_click", "offline_target")
SOURCE_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a")
BEFORE, AFTER = "#999999", "#1f77b4"  # the plots' before/after colours (a test looks for AFTER in a screenshot)
FLAG = "#c0392b"

CSS = f"""
body {{ font-family: "Liberation Sans", Arial, sans-serif; margin: 24px 40px; color: #222; max-width: 1200px; }}
h1 {{ margin-bottom: 4px; }} .sub {{ color: #555; margin-top: 0; }}
.flagged {{ border: 3px solid {FLAG}; background: #fde2e1; padding: 10px 18px; margin: 16px 0; }}
.flagged h2 {{ color: {FLAG}; margin: 4px 0 8px; }}
.clear {{ border: 3px solid #2e7d32; background: #e8f5e9; padding: 10px 18px; margin: 16px 0; }}
figure {{ margin: 18px 0; }} figcaption {{ color: #444; font-size: 14px; }}
img {{ max-width: 100%; }}
table {{ border-collapse: collapse; font-size: 13px; }} td, th {{ border: 1px solid #ccc; padding: 3px 7px; }}
tr.flag td {{ background: #fde2e1; }} td.num {{ text-align: right; }}
"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _name(s: dict) -> str:
    return f"{s['dimension']}:{s['segment']}"


def _repaired_across_runs(runs: list[dict]) -> str:
    import matplotlib.pyplot as plt

    dimensions = ("request", "history", "category")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
    ids = [r["run_id"] for r in runs]
    for ax, dimension in zip(axes, dimensions):
        names = sorted({s["segment"] for r in runs for s in r["segments"] if s["dimension"] == dimension})
        for name in names:
            ys = [next((s["repaired"] for s in r["segments"] if (s["dimension"], s["segment"]) == (dimension, name)),
                       None) for r in runs]  # fmt: skip
            ax.plot(ids, [float("nan") if y is None else y for y in ys], "o-", label=name)
        ax.plot(ids, [r["overall"]["repaired"] or 0.0 for r in runs], "k--", label="all groups")
        ax.set_title(f"by {dimension}")
        ax.set_xlabel("refresh run")
        ax.set_xticks(ids)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("repaired share of groups")
    fig.tight_layout()
    return _png(fig)


def _anchor_mix(run: dict) -> str:
    import matplotlib.pyplot as plt

    entries = [("all groups", run["overall"])] + [(_name(s), s) for s in run["segments"]]
    fig, ax = plt.subplots(figsize=(13, 0.35 * len(entries) + 1.2))
    left = [0] * len(entries)
    for source, color in zip(SOURCES, SOURCE_COLORS):
        counts = [e["anchor_sources"]["counts"][source] for _, e in entries]
        ax.barh(range(len(entries)), counts, left=left, color=color, label=source.replace("_", " "))
        left = [a + b for a, b in zip(left, counts)]
    ax.set_yticks(range(len(entries)), [n for n, _ in entries], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("repairs (anchors injected), by where the anchor came from")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def _metric_deltas(run: dict) -> str:
    import matplotlib.pyplot as plt

    entries = [("all groups", run["overall"], False)] + [(_name(s), s, s["disparity"]["flagged"])
                                                         for s in run["segments"]]  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.3 * len(entries) + 1.6), sharey=True)
    for ax, metric in zip(axes, ("HR@10", "NDCG@10", "Pass@1")):
        for y, (_, e, flagged) in enumerate(entries):
            m = e["metrics"].get(metric)
            if m is None:
                continue
            ax.errorbar(m["delta"], y, xerr=[[m["delta"] - m["low"]], [m["high"] - m["delta"]]], fmt="o",
                        color=FLAG if flagged else AFTER, capsize=3)  # fmt: skip
        overall = run["overall"]["metrics"].get(metric)
        if overall is not None:
            ax.axvline(overall["delta"], color="k", ls="--", lw=1)
        ax.axvline(0.0, color=BEFORE, lw=1)
        ax.set_title(f"Δ{metric} (child − parent)")
    axes[0].set_yticks(range(len(entries)), [n for n, _, _ in entries], fontsize=8)
    axes[0].invert_yaxis()
    fig.tight_layout()
    return _png(fig)


def _exposure(run: dict) -> str:
    import matplotlib.pyplot as plt

    entries = [("all groups", run["overall"])] + [(_name(s), s) for s in run["segments"] if s["slice_rows"]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.3 * len(entries) + 1.6), sharey=True)
    ys = range(len(entries))
    for ax, (key, title) in zip(axes, (("top1_share", "share to the top-1% items"), ("coverage", "catalogue coverage"),
                                       ("gini", "Gini of item exposure"))):  # fmt: skip
        before = [e["exposure"]["before"][key] or 0.0 for _, e in entries]
        after = [e["exposure"]["after"][key] or 0.0 for _, e in entries]
        ax.barh([y - 0.2 for y in ys], before, height=0.4, color=BEFORE, label="before (parent)")
        ax.barh([y + 0.2 for y in ys], after, height=0.4, color=AFTER, label="after (child)")
        ax.set_title(title)
    axes[0].set_yticks(list(ys), [n for n, _ in entries], fontsize=8)
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _flagged(runs: list[dict]) -> str:
    items = [f"<li><b>run {r['run_id']}</b> ({html.escape(r['version'] or '-')}): <b>{html.escape(_name(s))}</b> — "
             f"{html.escape(s['disparity']['reason'])}</li>"
             for r in reversed(runs) for s in r["segments"] if s["disparity"]["flagged"]]  # fmt: skip
    if not items:
        return '<section id="flagged" class="clear"><h2>No segment flagged</h2></section>'
    return (f'<section id="flagged" class="flagged"><h2>Flagged segments ({len(items)})</h2><ul>{"".join(items)}'
            "</ul></section>")


def _table(run: dict) -> str:
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    head = ("segment", "groups", "all-zero", "repaired", "unrepairable", "repairs", "mean reward", "slice rows",
            "ΔHR@10 [95%]", "top-1% share", "coverage", "Gini", "disparity")  # fmt: skip
    rows = []
    for name, e, flagged in [("all groups", run["overall"], False)] + [
            (_name(s), s, s["disparity"]["flagged"]) for s in run["segments"]]:  # fmt: skip
        hr = e["metrics"].get("HR@10")
        ex = e["exposure"]
        cells = [name, e["groups"], pct(e["all_zero"]), pct(e["repaired"]), pct(e["unrepairable"]), e["repairs"],
                 "-" if e["reward_mean"] is None else f"{e['reward_mean']:.3f}", e["slice_rows"],
                 "-" if hr is None else f"{hr['delta']:+.3f} [{hr['low']:+.3f}, {hr['high']:+.3f}]",
                 *[f"{pct(ex['before'][k])} → {pct(ex['after'][k])}" for k in ("top1_share", "coverage")],
                 f"{ex['before']['gini']:.3f} → {ex['after']['gini']:.3f}",
                 "" if "disparity" not in e else f"{e['disparity']['value']:.3f}"]  # fmt: skip
        tds = "".join(f'<td class="num">{html.escape(str(c))}</td>' if i else f"<td>{html.escape(str(c))}</td>"
                      for i, c in enumerate(cells))  # fmt: skip
        rows.append(f'<tr class="{"flag" if flagged else ""}">{tds}</tr>')
    return f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{''.join(rows)}</table>"


def render(runs: list[dict]) -> str:
    """The report of ``runs`` (snapshots as ``schemas.audit.RunAudit`` dicts, oldest first; the last is reported)."""
    if not runs:
        raise ValueError("no audit snapshot to report on (no refresh has trained a candidate yet)")
    run = runs[-1]
    threshold = run.get("config", {}).get("threshold")
    figures = [
        ("plot-repaired", _repaired_across_runs(runs), "Repaired share of the training groups per segment, run by "
         "run (dashed: all groups)."),
        ("plot-sources", _anchor_mix(run), f"Run {run['run_id']}: where the injected anchors came from."),
        ("plot-deltas", _metric_deltas(run), f"Run {run['run_id']}: served metrics of the child minus the parent on "
         "the gate's held-out slice, per segment, with 95% bootstrap intervals (red: flagged; dashed: all groups)."),
        ("plot-exposure", _exposure(run), f"Run {run['run_id']}: exposure of the slice's served top-10 lists before "
         "(parent) and after (child)."),
    ]  # fmt: skip
    body = "".join(f'<figure><img id="{i}" alt="{html.escape(c)}" src="{src}"><figcaption>{html.escape(c)}'
                   "</figcaption></figure>" for i, src, c in figures)  # fmt: skip
    title = f"Audit of repaired signals — runs {runs[0]['run_id']}–{run['run_id']}"
    sub = (f"Reported run {run['run_id']}: {html.escape(run['parent_version'] or '-')} → "
           f"{html.escape(run['version'] or '-')} ({html.escape(run['decision'] or '-')}). "
           + (f"Disparity threshold {threshold:g}. " if threshold is not None else "")
           + f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.")  # fmt: skip
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><p class=\"sub\">{sub}</p>"
            f"{_flagged(runs)}{body}<h2>Run {run['run_id']} per segment</h2>{_table(run)}</body></html>")


def write(runs: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(runs), encoding="utf-8")
    return path
