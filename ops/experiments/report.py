"""The experiment's report: figures per search width, a markdown table and plots."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

BASELINE = "grpo"
MIB = 2**20


def _steps(result: dict) -> list[dict]:
    return [r for r in result["diagnostics"] if "all_zero" in r]


def _evals(result: dict) -> list[dict]:
    return [r for r in result["diagnostics"] if "eval" in r]


def matched_budget(arm: dict, baseline: dict) -> dict:
    """The budget at which ``arm`` first reaches the baseline's final Pass@1, over the
    baseline's whole budget. ``at_start`` flags a target the SFT start already met
    (the baseline did not improve on SFT), where the ratio says nothing about speed."""
    target = baseline["final_eval"]["Pass@1"]
    spent = _steps(baseline)[-1]["budget"]
    for record in _evals(arm):
        if record["eval"]["Pass@1"] >= target - 1e-12:
            return {"ratio": record["budget"] / spent, "budget": record["budget"], "at_start": record["budget"] == 0}
    return {"ratio": None, "budget": None, "at_start": False}


def arm_figures(result: dict) -> dict:
    steps = _steps(result)
    return {
        "final": result["final_eval"],
        "budget": steps[-1]["budget"],
        "anchors_injected": steps[-1]["anchors_injected"],
        "actor_s_median": statistics.median(r["actor_s"] for r in steps),
        "step_s_median": statistics.median(r["step_s"] for r in steps),
        "rollout_s_median": statistics.median(r["rollout_s"] for r in steps),
        "actor_rows_mean": statistics.fmean(r["actor_rows"] for r in steps),
        "saved_bytes_mean": statistics.fmean(r["saved_bytes"] for r in steps),
        "rss_rise_max": max(r["rss_rise"] for r in steps),
        "cuda_peak_max": max((r.get("cuda_peak") or 0) for r in steps) or None,
        "peak_rss_bytes": result["peak_rss_bytes"],
        "all_zero_mean": statistics.fmean(r["all_zero"] for r in steps),
        "single_hit_mean": statistics.fmean(r["single_hit"] for r in steps),
        "unrepairable_mean": statistics.fmean(r["unrepairable"] for r in steps),
        "grad_norm_median": statistics.median(r["grad_norm"] for r in steps),
        "seconds": result["seconds"],
        "lr": result["config"]["lr"],
    }


def _hits(ranks: list[int | None], k: int) -> list[float]:
    return [1.0 if r is not None and r < k else 0.0 for r in ranks]


def paired_deltas(a: list[int | None], b: list[int | None]) -> dict:
    """Pass@1 and HR@10 of ranking ``a`` minus ``b`` on the same rows, with 95% bootstrap intervals."""
    from recast.metrics import paired_bootstrap

    return {
        name: dict(zip(("mean", "lo", "hi"), paired_bootstrap(_hits(a, k), _hits(b, k))))
        for name, k in (("Pass@1", 1), ("HR@10", 10))
    }


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def build_report(plan, runs: dict[int, dict[str, dict]], counts: dict, eval_csv: Path) -> dict:
    report = {
        "eval_split": str(eval_csv),
        "rows": counts,
        "arms": list(plan.arms),
        "base_config": plan.base.to_dict(),
        "lr": plan.lr,
        "seed": plan.seed,
        "widths": {},
    }
    for width, arms in runs.items():
        baseline = arms[BASELINE]
        sft = baseline["start_eval"]
        base = arm_figures(baseline)
        per_arm = {}
        for name, result in arms.items():
            figs = arm_figures(result)
            final = figs["final"]
            figs["pass1_gain_vs_sft"] = _ratio(final["Pass@1"], sft["Pass@1"])
            figs["pass1_gain_vs_baseline"] = _ratio(final["Pass@1"], base["final"]["Pass@1"])
            if "ranks" in result:
                figs["delta_vs_sft"] = paired_deltas(result["ranks"]["final"], result["ranks"]["start"])
                figs["delta_vs_baseline"] = paired_deltas(result["ranks"]["final"], baseline["ranks"]["final"])
            if name != BASELINE:
                figs["matched_budget"] = matched_budget(result, baseline)
                figs["actor_speedup"] = _ratio(base["actor_s_median"], figs["actor_s_median"])
                figs["step_speedup"] = _ratio(base["step_s_median"], figs["step_s_median"])
                figs["saved_memory_ratio"] = _ratio(figs["saved_bytes_mean"], base["saved_bytes_mean"])
                figs["peak_rss_ratio"] = _ratio(figs["peak_rss_bytes"], base["peak_rss_bytes"])
            per_arm[name] = figs
        report["widths"][str(width)] = {"sft": sft, "arms": per_arm}
    return report


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{(x - 1) * 100:+.1f}%"


def markdown(report: dict) -> str:
    lines = [f"Eval split: `{report['eval_split']}`; rows {report['rows']}; seed {report['seed']}.", ""]
    for width, block in report["widths"].items():
        sft = block["sft"]
        lines += [
            f"### W = {width}",
            "",
            "| arm | lr | Pass@1 | HR@10 | NDCG@10 | Pass@1 vs SFT | budget to baseline's Pass@1 | "
            "actor s/step | step s/step | actor rows | autograd MiB | peak RSS MiB | all-zero |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            f"| SFT start | | {sft['Pass@1']:.4f} | {sft['HR@10']:.4f} | {sft['NDCG@10']:.4f} | | | | | | | | |",
        ]
        for name, f in block["arms"].items():
            mb = f.get("matched_budget")
            if mb is None:
                matched = "(baseline)"
            elif mb["ratio"] is None:
                matched = "never"
            else:
                matched = f"{mb['ratio'] * 100:.1f}%" + (" (SFT start)" if mb["at_start"] else "")
            speed = f" ({f['actor_speedup']:.2f}x)" if f.get("actor_speedup") else ""
            step_speed = f" ({f['step_speedup']:.2f}x)" if f.get("step_speedup") else ""
            lines.append(
                f"| {name} | {f['lr']:g} | {f['final']['Pass@1']:.4f} | {f['final']['HR@10']:.4f} | "
                f"{f['final']['NDCG@10']:.4f} | {_pct(f['pass1_gain_vs_sft'])} | {matched} | "
                f"{f['actor_s_median']:.3f}{speed} | {f['step_s_median']:.3f}{step_speed} | "
                f"{f['actor_rows_mean']:.0f} | {f['saved_bytes_mean'] / MIB:.0f} | {f['peak_rss_bytes'] / MIB:.0f} | "
                f"{f['all_zero_mean']:.3f} |"
            )
        lines.append("")
        with_ci = {n: f for n, f in block["arms"].items() if "delta_vs_sft" in f}
        if with_ci:
            lines += [
                "Paired differences on the same rows, mean [95% bootstrap interval]:",
                "",
                "| arm | ΔPass@1 vs SFT | ΔHR@10 vs SFT | ΔPass@1 vs grpo | ΔHR@10 vs grpo |",
                "| --- | --- | --- | --- | --- |",
            ]
            for name, f in with_ci.items():
                cells = [_ci(f[d][m]) for d in ("delta_vs_sft", "delta_vs_baseline") for m in ("Pass@1", "HR@10")]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def _ci(d: dict) -> str:
    return f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]"


def plot_report(out: Path, runs: dict[int, dict[str, dict]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = sorted(runs)
    fig, axes = plt.subplots(3, len(widths), figsize=(6 * len(widths), 12), squeeze=False)
    for col, width in enumerate(widths):
        ax = axes[0, col]
        for name, result in runs[width].items():
            evals = _evals(result)
            ax.plot([r["budget"] for r in evals], [r["eval"]["Pass@1"] for r in evals], marker="o", label=name)
        ax.set(title=f"Pass@1 on the eval split, W={width}", xlabel="rollout budget (contexts x W)")
        ax.legend()
        ax = axes[1, col]
        names = list(runs[width])
        actor = [arm_figures(runs[width][n])["actor_s_median"] for n in names]
        step = [arm_figures(runs[width][n])["step_s_median"] for n in names]
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], actor, width=0.4, label="actor update")
        ax.bar([i + 0.2 for i in x], step, width=0.4, label="whole step")
        ax.set_xticks(list(x), names, rotation=20)
        ax.set(title=f"seconds per step (median), W={width}")
        ax.legend()
        ax = axes[2, col]
        for name, result in runs[width].items():
            steps = _steps(result)
            ax.plot([r["budget"] for r in steps], [r["all_zero"] for r in steps], label=name)
        ax.set(title=f"all-zero groups (share, before repair), W={width}", xlabel="rollout budget", ylim=(0, 1.02))
        ax.legend()
    fig.tight_layout()
    paths = [out / "report.png"]
    fig.savefig(paths[0], dpi=90)
    plt.close(fig)
    return paths


def write_report(out: Path, report: dict, runs: dict[int, dict[str, dict]]) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report) + "\n")
    plot_report(out, runs)
