"""RefreshConfig: everything that decides one refresh, saved in the run record and the child's manifest.

The operator-facing knobs come from ``Settings`` (``RECAST_REFRESH_*``, ``RECAST_GATE_*``); the
rest are defaults measured in BENCHMARKS.md ("The closed loop"). What it learns follows what was
measured before the loop existed: continued SFT on the new users' windows helped more than any RL
arm, so every refresh starts with it (with a replay share of older windows against forgetting);
the RL step then works on the logged contexts with the logged positives as rewards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from schemas.settings import Settings

METHODS = ("recast", "grpo", "none")


@dataclass(frozen=True)
class RefreshConfig:
    method: str = "recast"  # the RL step: recast | grpo | none
    period_s: int = 86_400  # complete periods of event time only (see data.window)
    min_groups: int = 50  # fewer new closed groups: skipped
    heldout_share: float = 0.2  # latest share of the window, by event time: the gate's, never trained on
    replay_share: float = 0.5  # of the SFT windows, drawn from older data
    sft_epochs: int = 2
    sft_lr: float = 5e-4  # a tenth of the initial SFT's peak: nudge the served model, do not retrain it
    sft_batch_size: int = 64
    rl_steps: int = 20
    rl_width: int = 16
    rl_contexts: int = 32
    # Learning rates tuned per method on the tuning users (BENCHMARKS.md, RL head-to-head).
    rl_lr: dict | None = None
    gate_tolerance: float = 0.01
    gate_min_rows: int = 30  # a slice with fewer scored rows is reported, not gated (one hit would decide)
    gate_max_rows: int = 1000
    gate_resamples: int = 1000
    beam_width: int = 50
    # An item added online stays marked added (a ranker feature) until counted this often. The ranker learnt the
    # mark on items hidden from all their counts; unmarked at its first count, a new item reads as an old one
    # nobody buys and drops down the lists of every shopper its counts do not reach (1 did that). Over three
    # nights of the cold-start split (16 seeds), 20 against 1: new targets +0.017 HR@10, beyond the noise; old
    # ones -0.0014; every row +0.0005, inside it (BENCHMARKS.md, issue 15, fifteenth round).
    added_mark_until: int = 20
    train_file: Path | None = None
    gate_split: Path | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"refresh method must be one of {METHODS}, got {self.method!r}")
        if not 0.0 < self.heldout_share < 1.0:
            raise ValueError(f"heldout_share must lie in (0, 1), got {self.heldout_share}")
        if not 0.0 <= self.replay_share < 1.0:
            raise ValueError(f"replay_share must lie in [0, 1), got {self.replay_share}")
        for name in ("period_s", "min_groups", "rl_width", "rl_contexts", "sft_batch_size", "gate_min_rows",
                     "added_mark_until"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rl_width < 2:
            raise ValueError("rl_width must be >= 2: a group of one has nothing to contrast")

    @property
    def lr_rl(self) -> float:
        return (self.rl_lr or {"recast": 3e-5, "grpo": 1e-4}).get(self.method, 1e-4)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> RefreshConfig:
        values = dict(
            method=settings.refresh_method, period_s=settings.refresh_period_s, min_groups=settings.refresh_min_groups,
            heldout_share=settings.refresh_heldout_share, replay_share=settings.refresh_replay_share,
            sft_epochs=settings.refresh_sft_epochs, rl_steps=settings.refresh_rl_steps,
            gate_tolerance=settings.gate_tolerance, gate_max_rows=settings.gate_max_rows,
            beam_width=settings.beam_width, train_file=settings.train_file, gate_split=settings.gate_split,
        )  # fmt: skip
        return cls(**{**values, **overrides})

    def to_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
