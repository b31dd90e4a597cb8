"""``recast audit``'s table: one refresh's figures, one row per segment, flagged segments marked."""

from __future__ import annotations


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _delta(metrics: dict, name: str) -> str:
    m = metrics.get(name)
    return "-" if m is None else f"{m['delta']:+.3f} [{m['low']:+.3f}, {m['high']:+.3f}]"


def _arrow(exposure: dict, key: str) -> str:
    before, after = exposure["before"][key], exposure["after"][key]
    return "-" if before is None or after is None else f"{before:.2f}->{after:.2f}"


# Strongest outcome first; a fixed order, since the snapshots' JSONB does not keep the keys' order.
SOURCES = {"organic_purchase": "purchase", "organic_add_to_cart": "cart", "organic_click": "click",
           "offline_target": "offline"}  # fmt: skip


def _sources(mix: dict) -> str:
    counts = mix["counts"]
    return " ".join(f"{short}:{counts[k]}" for k, short in SOURCES.items() if counts.get(k)) or "-"


HEAD = (f"{'':1} {'segment':<22}{'groups':>7}{'zero':>6}{'rep':>6}{'unrep':>6}{'repairs':>8}  {'anchors':<26}"
        f"{'reward':>7}{'rows':>6}  {'dHR@10 [95%]':<26}{'top1%':>11}{'cover':>11}{'gini':>11}")  # fmt: skip


def _row(flag: str, name: str, e: dict) -> str:
    return (f"{flag:1} {name[:21]:<22}{e['groups']:>7}{_pct(e['all_zero']):>6}{_pct(e['repaired']):>6}"
            f"{_pct(e['unrepairable']):>6}{e['repairs']:>8}  {_sources(e['anchor_sources'])[:25]:<26}"
            f"{_num(e['reward_mean']):>7}{e['slice_rows']:>6}  {_delta(e['metrics'], 'HR@10'):<26}"
            f"{_arrow(e['exposure'], 'top1_share'):>11}{_arrow(e['exposure'], 'coverage'):>11}"
            f"{_arrow(e['exposure'], 'gini'):>11}")  # fmt: skip


def run_table(run: dict, segments: list[dict]) -> str:
    """``run``: a snapshot (``schemas.audit.RunAudit`` as a dict); ``segments``: the entries to show."""
    title = (f"run {run['run_id']}: {run['parent_version'] or '-'} -> {run['version'] or '-'} "
             f"({run['decision'] or '-'}), {run['created_at']:%Y-%m-%d %H:%M:%S} UTC")  # fmt: skip
    lines = [title, HEAD, "-" * len(HEAD), _row("", "(all groups)", run["overall"])]
    for s in segments:
        lines.append(_row("!" if s["disparity"]["flagged"] else "", f"{s['dimension']}:{s['segment']}", s))
    flagged = [s for s in segments if s["disparity"]["flagged"]]
    lines.append("flagged: " + ("; ".join(f"{s['dimension']}:{s['segment']} ({s['disparity']['reason']})"
                                          for s in flagged) or "none"))  # fmt: skip
    return "\n".join(lines)
