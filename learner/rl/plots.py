"""PNG plots of one RL run's diagnostics (``diagnostics.jsonl``)."""

from __future__ import annotations

import json
from pathlib import Path


def read_diagnostics(path: Path) -> list[dict]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_run(records: list[dict], out: Path, title: str = "") -> Path:
    """Six panels over the rollout budget: group regime, reward, eval, time, memory, gradient."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    steps = [r for r in records if "all_zero" in r]
    evals = [r for r in records if "eval" in r]
    budget = [r["budget"] for r in steps]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    ax = axes[0, 0]
    for key in ("all_zero", "single_hit", "repaired", "unrepairable"):
        ax.plot(budget, [r[key] for r in steps], label=key.replace("_", "-"))
    ax.set(title="groups (shares, before repair)", xlabel="rollout budget", ylim=(-0.02, 1.02))
    ax.legend()
    ax = axes[0, 1]
    ax.plot(budget, [r["mean_reward"] for r in steps])
    ax.set(title="mean reward of rolled-out candidates", xlabel="rollout budget")
    ax = axes[0, 2]
    for key in ("Pass@1", "HR@10", "NDCG@10"):
        ax.plot([r["budget"] for r in evals], [r["eval"][key] for r in evals], marker="o", label=key)
    ax.set(title="eval split", xlabel="rollout budget")
    ax.legend()
    ax = axes[1, 0]
    for key in ("rollout_s", "reference_s", "actor_s", "step_s"):
        ax.plot(budget, [r[key] for r in steps], label=key[:-2])
    ax.set(title="seconds per step", xlabel="rollout budget")
    ax.legend()
    ax = axes[1, 1]
    ax.plot(budget, [r["saved_bytes"] / 2**20 for r in steps], label="autograd saved")
    ax.plot(budget, [r["rss_rise"] / 2**20 for r in steps], label="RSS rise")
    if any(r.get("cuda_peak") for r in steps):
        ax.plot(budget, [(r.get("cuda_peak") or 0) / 2**20 for r in steps], label="CUDA peak")
    ax.set(title="actor-update memory (MiB)", xlabel="rollout budget")
    ax.legend()
    ax = axes[1, 2]
    ax.plot(budget, [r["grad_norm"] for r in steps])
    ax.set(title="gradient norm (before clipping)", xlabel="rollout budget")
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
