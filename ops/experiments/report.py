"""The experiment's report: figures per search width pooled over seeds, intervals, tables and plots.

``runs[width][name][seed]`` is one run's result.json with its diagnostics and eval ranks.
Every figure of an arm pools its seeds: metrics are seed means; a paired difference is
the per-entry difference averaged over seeds (seed s of one arm against seed s of the
other; the SFT start is the same for all), with a 95% bootstrap interval that resamples
users (``recast.metrics.clustered_bootstrap``).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

# The baseline the ratios are taken against: the literal one when it ran, else its lean relative (without the flat
# groups' KL-only rows, recast.signals.spec skip_flat; the step-time ratios then come from ops.bench.rl_step).
BASELINES = ("grpo", "grpo-lean")
METRICS = ("Pass@1", "HR@10", "NDCG@10")
MIB = 2**20
# Diagnostics averaged over the steps (and seeds) where they were measured.
DIAGNOSTICS = ("all_zero", "flat", "single_hit", "repaired", "anchor_share", "anchor_share_capped", "anchor_hit_cos",
               "anchors_entering", "top1_change", "anchor_gap_before", "anchor_gap_after", "grad_norm")  # fmt: skip


def _steps(result: dict) -> list[dict]:
    return [r for r in result["diagnostics"] if "all_zero" in r]


def _evals(result: dict) -> list[dict]:
    return [r for r in result["diagnostics"] if "eval" in r]


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def pass1_curve(seeds: dict[int, dict]) -> list[tuple[int, float]]:
    """(budget, Pass@1 averaged over seeds) at every evaluation all seeds share."""
    curves = [{r["budget"]: r["eval"]["Pass@1"] for r in _evals(res)} for res in seeds.values()]
    budgets = sorted(set.intersection(*(set(c) for c in curves)))
    return [(b, statistics.fmean(c[b] for c in curves)) for b in budgets]


def matched_budget(arm: dict[int, dict], baseline: dict[int, dict]) -> dict:
    """The budget at which ``arm`` (seed mean) first reaches the baseline's final Pass@1 (seed mean),
    over the baseline's whole budget. ``at_start`` flags a target the SFT start already met."""
    base_curve = pass1_curve(baseline)
    target, spent = base_curve[-1][1], base_curve[-1][0]
    for budget, value in pass1_curve(arm):
        if value >= target - 1e-12:
            return {"ratio": budget / spent, "budget": budget, "at_start": budget == 0}
    return {"ratio": None, "budget": None, "at_start": False}


def arm_figures(seeds: dict[int, dict]) -> dict:
    results = list(seeds.values())
    steps = [r for res in results for r in _steps(res)]
    figures = {
        "seeds": sorted(seeds),
        "final": {m: statistics.fmean(res["final_eval"][m] for res in results) for m in METRICS},
        "final_by_seed": {str(s): {m: res["final_eval"][m] for m in METRICS} for s, res in seeds.items()},
        "target_logprob": _mean(res["final_eval"].get("target_logprob") for res in results),
        "budget": _steps(results[0])[-1]["budget"],
        "anchors_injected": statistics.fmean(_steps(res)[-1]["anchors_injected"] for res in results),
        "actor_s_median": statistics.median(r["actor_s"] for r in steps),
        "step_s_median": statistics.median(r["step_s"] for r in steps),
        "rollout_s_median": statistics.median(r["rollout_s"] for r in steps),
        "actor_rows_mean": statistics.fmean(r["actor_rows"] for r in steps),
        "saved_bytes_mean": statistics.fmean(r["saved_bytes"] for r in steps),
        "rss_rise_max": max(r["rss_rise"] for r in steps),
        "cuda_peak_max": max((r.get("cuda_peak") or 0) for r in steps) or None,
        "peak_rss_bytes": max(res["peak_rss_bytes"] for res in results),
        "kl_last": statistics.fmean(_steps(res)[-1]["kl"] for res in results),
        "seconds": statistics.fmean(res["seconds"] for res in results),
        "lr": results[0]["config"]["lr"],
    }
    for key in DIAGNOSTICS:
        figures[f"{key}_mean"] = _mean(r.get(key) for r in steps)
    return figures


def pooled_delta(arm: dict[int, dict], other: dict[int, dict] | None, metric: str) -> dict:
    """``arm`` minus ``other`` (None: the SFT start) per entry, averaged over seeds, with a users' interval."""
    from recast.metrics import clustered_bootstrap, per_entry_scores

    pairs = []
    for seed, res in arm.items():
        base = res["ranks"]["start"] if other is None else other[seed]["ranks"]["final"]
        pairs.append((per_entry_scores(res["ranks"]["final"], metric), per_entry_scores(base, metric)))
    n = len(pairs[0][0])
    diffs = [statistics.fmean(a[i] - b[i] for a, b in pairs) for i in range(n)]
    users = next(iter(arm.values()))["ranks"].get("users") or [str(i) for i in range(n)]
    mean, lo, hi = clustered_bootstrap(diffs, users)
    return {"mean": mean, "lo": lo, "hi": hi}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def width_block(arms: dict[str, dict[int, dict]], baseline: str | None) -> dict:
    sft = next(iter(next(iter(arms.values())).values()))["start_eval"]
    per_arm = {}
    base = arm_figures(arms[baseline]) if baseline else None
    for name, seeds in arms.items():
        figs = arm_figures(seeds)
        figs["delta_vs_sft"] = {m: pooled_delta(seeds, None, m) for m in METRICS}
        if base is not None and name != baseline:
            figs["delta_vs_baseline"] = {m: pooled_delta(seeds, arms[baseline], m) for m in METRICS}
            figs["matched_budget"] = matched_budget(seeds, arms[baseline])
            figs["actor_speedup"] = _ratio(base["actor_s_median"], figs["actor_s_median"])
            figs["step_speedup"] = _ratio(base["step_s_median"], figs["step_s_median"])
            figs["saved_memory_ratio"] = _ratio(figs["saved_bytes_mean"], base["saved_bytes_mean"])
            figs["peak_rss_ratio"] = _ratio(figs["peak_rss_bytes"], base["peak_rss_bytes"])
        per_arm[name] = figs
    return {"sft": {m: sft.get(m) for m in (*METRICS, "rows", "target_logprob")}, "arms": per_arm, "baseline": baseline}


def choose_lrs(block: dict) -> dict:
    """Per arm, the rate with the largest dPass@1 + dHR@10 against SFT (pooled over seeds); ties: the
    smaller rate. The rule is fixed before any run, and the same for every arm."""
    by_arm: dict[str, list[tuple[float, float]]] = {}
    for name, figs in block["arms"].items():
        arm, lr = name.rsplit("@", 1)
        d = figs["delta_vs_sft"]
        by_arm.setdefault(arm, []).append((float(lr), d["Pass@1"]["mean"] + d["HR@10"]["mean"]))
    return {arm: max(sorted(scores), key=lambda s: (round(s[1], 12), -s[0]))[0] for arm, scores in by_arm.items()}


def build_report(plan, runs: dict[int, dict[str, dict[int, dict]]], counts: dict, eval_csv: Path) -> dict:
    tuning = bool(plan.lr_grid)
    report = {
        "eval_split": str(eval_csv),
        "rows": counts,
        "arms": list(plan.arms),
        "seeds": list(plan.seeds),
        "base_config": plan.base.to_dict(),
        "lr_grid": list(plan.lr_grid),
        "widths": {},
    }
    for width, arms in runs.items():
        # Without the baseline among the arms (a screening batch) there are no ratios against it.
        baseline = None if tuning else next((b for b in BASELINES if b in arms), None)
        block = width_block(arms, baseline)
        if tuning:
            block["chosen_lr"] = choose_lrs(block)
        report["widths"][str(width)] = block
    return report


def _ci(d: dict) -> str:
    return f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]"


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def markdown(report: dict) -> str:
    lines = [f"Eval split: `{report['eval_split']}`; rows {report['rows']}; seeds {report['seeds']}.", ""]
    for width, block in report["widths"].items():
        sft = block["sft"]
        lines += [
            f"### W = {width}",
            "",
            f"SFT start: Pass@1 {sft['Pass@1']:.4f}, HR@10 {sft['HR@10']:.4f}, NDCG@10 {sft['NDCG@10']:.4f} "
            f"on {sft['rows']} entries.",
            "",
            "| arm | lr | Pass@1 | HR@10 | NDCG@10 | budget to baseline's Pass@1 | actor s/step | step s/step | "
            "actor rows | autograd MiB | peak RSS MiB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, f in block["arms"].items():
            mb = f.get("matched_budget")
            matched = "" if mb is None else "never" if mb["ratio"] is None else f"{mb['ratio'] * 100:.1f}%"
            speed = f" ({f['actor_speedup']:.2f}x)" if f.get("actor_speedup") else ""
            step_speed = f" ({f['step_speedup']:.2f}x)" if f.get("step_speedup") else ""
            lines.append(
                f"| {name} | {f['lr']:g} | {f['final']['Pass@1']:.4f} | {f['final']['HR@10']:.4f} | "
                f"{f['final']['NDCG@10']:.4f} | {matched} | {f['actor_s_median']:.3f}{speed} | "
                f"{f['step_s_median']:.3f}{step_speed} | {f['actor_rows_mean']:.0f} | "
                f"{f['saved_bytes_mean'] / MIB:.0f} | {f['peak_rss_bytes'] / MIB:.0f} |"
            )
        lines += ["", "Paired differences pooled over seeds, mean [95% interval, users resampled]:", ""]
        against = ["SFT"] + ([block["baseline"]] if block.get("baseline") else [])
        head = [f"Δ{m} vs {a}" for a in against for m in METRICS]
        lines += ["| arm | " + " | ".join(head) + " |", "|" + " --- |" * (len(head) + 1)]
        for name, f in block["arms"].items():
            cells = [_ci(f["delta_vs_sft"][m]) for m in METRICS]
            if len(against) > 1:
                cells += [_ci(f["delta_vs_baseline"][m]) if "delta_vs_baseline" in f else "" for m in METRICS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "Diagnostics (means over steps and seeds):", "",
                  "| arm | all-zero | flat | repaired | anchor share | capped | cos(anchor, hit) | anchors entering "
                  "top-W | top-1 change | anchor gap before / after | k3 at end | target log-prob |",
                  "|" + " --- |" * 12]  # fmt: skip
        for name, f in block["arms"].items():
            lines.append(
                f"| {name} | {_f(f['all_zero_mean'])} | {_f(f['flat_mean'])} | {_f(f['repaired_mean'])} | "
                f"{_f(f['anchor_share_mean'])} | {_f(f['anchor_share_capped_mean'])} | "
                f"{_f(f['anchor_hit_cos_mean'])} | {_f(f['anchors_entering_mean'])} | {_f(f['top1_change_mean'])} | "
                f"{_f(f['anchor_gap_before_mean'], '.2f')} / {_f(f['anchor_gap_after_mean'], '.2f')} | "
                f"{_f(f['kl_last'])} | {_f(f['target_logprob'])} |"
            )
        if "chosen_lr" in block:
            lines += ["", "Chosen learning rates (largest ΔPass@1 + ΔHR@10 vs SFT): "
                      + ", ".join(f"{a} {lr:g}" for a, lr in block["chosen_lr"].items())]  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def plot_report(out: Path, runs: dict[int, dict[str, dict[int, dict]]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = sorted(runs)
    fig, axes = plt.subplots(3, len(widths), figsize=(7 * len(widths), 12), squeeze=False)
    for col, width in enumerate(widths):
        ax = axes[0, col]
        for name, seeds in runs[width].items():
            curve = pass1_curve(seeds)
            ax.plot([b for b, _ in curve], [p for _, p in curve], marker="o", label=name)
        ax.set(title=f"Pass@1 on the eval split (seed mean), W={width}", xlabel="rollout budget (contexts x W)")
        ax.legend(fontsize=7)
        ax = axes[1, col]
        names = list(runs[width])
        figs = [arm_figures(runs[width][n]) for n in names]
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], [f["actor_s_median"] for f in figs], width=0.4, label="actor update")
        ax.bar([i + 0.2 for i in x], [f["step_s_median"] for f in figs], width=0.4, label="whole step")
        ax.set_xticks(list(x), names, rotation=30, fontsize=7)
        ax.set(title=f"seconds per step (median), W={width}")
        ax.legend()
        ax = axes[2, col]
        for name, seeds in runs[width].items():
            steps = _steps(next(iter(seeds.values())))
            share = [(r["budget"], r["anchor_share"]) for r in steps if r.get("anchor_share") is not None]
            if share:
                ax.plot(*zip(*share), label=name)
        ax.set(title=f"anchors' share of the squared gradient norm (first seed), W={width}",
               xlabel="rollout budget", ylim=(-0.02, 1.02))  # fmt: skip
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "report.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(out: Path, report: dict, runs: dict) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report) + "\n")
    plot_report(out, runs)
