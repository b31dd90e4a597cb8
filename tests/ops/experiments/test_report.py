"""The experiment report's figures, on hand-made run records."""

from ops.experiments.report import arm_figures, markdown, matched_budget


def result(evals: list[tuple[int, float]], actor_s: float, saved: int, all_zero: float) -> dict:
    steps = [
        {
            "step": i,
            "budget": b,
            "all_zero": all_zero,
            "single_hit": 1 - all_zero,
            "unrepairable": 0.0,
            "anchors_injected": 0,
            "actor_s": actor_s,
            "step_s": actor_s + 1,
            "rollout_s": 1.0,
            "actor_rows": 10,
            "saved_bytes": saved,
            "rss_rise": 0,
            "grad_norm": 1.0,
        }  # fmt: skip
        for i, (b, _) in enumerate(evals)
        if b > 0
    ]
    diagnostics = [{"step": 0, "budget": 0, "eval": _metrics(evals[0][1])}]
    for record, (_, p) in zip(steps, evals[1:]):
        diagnostics.append({**record, "eval": _metrics(p)})
    return {
        "diagnostics": diagnostics,
        "start_eval": _metrics(evals[0][1]),
        "final_eval": _metrics(evals[-1][1]),
        "peak_rss_bytes": 100 * 2**20,
        "seconds": 1.0,
        "config": {"lr": 1e-4},
    }


def _metrics(pass1: float) -> dict:
    return {"Pass@1": pass1, "HR@10": 2 * pass1, "NDCG@10": pass1, "rows": 100}


def test_matched_budget_is_the_first_eval_reaching_the_baselines_final_pass1():
    baseline = result([(0, 0.05), (100, 0.06), (200, 0.07)], actor_s=2.0, saved=800, all_zero=0.8)
    faster = result([(0, 0.05), (100, 0.07), (200, 0.08)], actor_s=0.25, saved=100, all_zero=0.8)
    assert matched_budget(faster, baseline) == {"ratio": 0.5, "budget": 100, "at_start": False}
    never = result([(0, 0.05), (100, 0.05), (200, 0.06)], actor_s=0.25, saved=100, all_zero=0.8)
    assert matched_budget(never, baseline)["ratio"] is None
    # A baseline that never beat SFT is matched at budget 0: flagged, since it says nothing about speed.
    flat = result([(0, 0.05), (100, 0.04), (200, 0.05)], actor_s=2.0, saved=800, all_zero=0.8)
    assert matched_budget(faster, flat) == {"ratio": 0.0, "budget": 0, "at_start": True}


def test_arm_figures_summarise_time_memory_and_regime():
    figures = arm_figures(result([(0, 0.05), (100, 0.06), (200, 0.07)], actor_s=2.0, saved=800, all_zero=0.75))
    assert figures["actor_s_median"] == 2.0 and figures["step_s_median"] == 3.0
    assert figures["saved_bytes_mean"] == 800 and figures["all_zero_mean"] == 0.75
    assert figures["budget"] == 200 and figures["final"]["Pass@1"] == 0.07


def test_markdown_has_a_row_per_arm_and_the_sft_start():
    report = {
        "eval_split": "x.csv",
        "rows": {"sft": 1},
        "seed": 0,
        "widths": {
            "16": {
                "sft": _metrics(0.05),
                "arms": {
                    "grpo": {
                        **arm_figures(result([(0, 0.05), (100, 0.06)], 2.0, 800, 0.8)),
                        "pass1_gain_vs_sft": 1.2,
                        "pass1_gain_vs_baseline": 1.0,
                    },  # fmt: skip
                    "recast": {
                        **arm_figures(result([(0, 0.05), (100, 0.066)], 0.25, 100, 0.8)),
                        "pass1_gain_vs_sft": 1.32,
                        "pass1_gain_vs_baseline": 1.1,
                        "matched_budget": {"ratio": 1.0, "budget": 100, "at_start": False},
                        "actor_speedup": 8.0,
                        "step_speedup": 2.4,
                    },
                },
            }
        },
    }
    text = markdown(report)
    assert "| SFT start |" in text and "| grpo |" in text and "| recast |" in text
    assert "(8.00x)" in text and "+32.0%" in text and "100.0%" in text
