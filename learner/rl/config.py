"""RLConfig: everything that decides an RL run; saved in the checkpoint manifest.

The outer loop is the same for every method; ``method`` only picks the signal
strategy (``recast.signals.strategy``). Defaults follow ../shared/docs/recast-method.md
and the choices measured in BENCHMARKS.md ("RL: ReCast vs the group-normalised baseline").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from recast.signals.objective import ObjectiveConfig
from recast.signals.strategy import CONTRAST_LOSSES, METHODS

NORMALISERS = ("groups_tokens", "token_mean")


@dataclass(frozen=True)
class RLConfig:
    method: str = "recast"  # recast | grpo
    width: int = 16  # search width W: candidates per rollout group
    contexts_per_step: int = 64
    steps: int = 80
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ppo_epochs: int = 1  # with 1 the PPO ratio is 1: no old-policy pass is needed
    clip_low: float = 0.2
    clip_high: float = 0.28
    kl_beta: float = 1e-3
    # Repair all-zero groups with the known positive (ReCast's first half). A switch
    # for both methods, so "group-normalised + repair" is an arm of its own.
    repair: bool = True
    ranking_reward: bool = False  # ReRe's rank penalty on negatives (baseline only)
    contrast_loss: str = "boundary"  # pg (literal +-1) | boundary | logistic
    margin: float = 1.0  # boundary: push n* down only while log pi(n*) + margin > log pi(p*)
    negative_weight: float = 1.0  # n*'s advantage is -negative_weight (pg and boundary losses)
    logistic_tau: float = 1.0
    # groups_tokens: sum / (contexts in the step x SID tokens), the same for both methods;
    # token_mean: the literal per-token mean of the open frameworks.
    normaliser: str = "groups_tokens"
    eval_every: int = 10
    eval_beams: int = 50
    eval_rows: int | None = None  # None: every row of the eval split
    max_history: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.contrast_loss not in CONTRAST_LOSSES:
            raise ValueError(f"contrast_loss must be one of {CONTRAST_LOSSES}, got {self.contrast_loss!r}")
        if self.normaliser not in NORMALISERS:
            raise ValueError(f"normaliser must be one of {NORMALISERS}, got {self.normaliser!r}")
        for name in ("width", "contexts_per_step", "steps", "ppo_epochs", "eval_every", "eval_beams"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.width < 2:
            raise ValueError("width must be >= 2: a group of one has nothing to contrast or normalise")
        if self.eval_beams < 10:
            raise ValueError("eval_beams must be >= 10 (HR@10 needs ten items)")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.negative_weight <= 1.0:
            raise ValueError(f"negative_weight must lie in [0, 1], got {self.negative_weight}")
        ObjectiveConfig(self.clip_low, self.clip_high, self.kl_beta, self.logistic_tau)  # validates

    @property
    def objective(self) -> ObjectiveConfig:
        return ObjectiveConfig(self.clip_low, self.clip_high, self.kl_beta, self.logistic_tau)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, RLConfig] = {
    # Seconds: tests and smoke runs.
    "tiny": RLConfig(width=4, contexts_per_step=8, steps=3, eval_every=2, eval_beams=10, eval_rows=32),
    "default": RLConfig(),
}


def preset(name: str, **overrides) -> RLConfig:
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown RL preset {name!r}; choose one of {sorted(PRESETS)}") from None
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
