"""RLConfig: everything that decides an RL run; saved in the checkpoint manifest.

The outer loop is the same for every method. ``method`` names a SignalSpec
(``recast.signals.spec.METHODS``: what each group teaches) and ``signal`` overrides
its fields, so a variant is configuration, never a new code path:
``RLConfig(method="grpo", signal={"repair": True})`` is "group-normalised + repair".
Defaults follow ../shared/docs/recast-method.md and what BENCHMARKS.md measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from recast.signals.objective import ObjectiveConfig
from recast.signals.spec import SIGNAL_FIELDS, SignalSpec, method_spec

NORMALISERS = ("groups_tokens", "token_mean")
EVAL_UNITS = ("windows", "rows")


def _help(text: str, default=None, factory=None):
    if factory is not None:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class RLConfig:
    method: str = _help("Named signal (recast.signals.spec.METHODS): recast | recast-literal | grpo.", "recast")
    signal: dict = _help("Overrides of the method's SignalSpec fields, e.g. {'repair': False}.", factory=dict)
    width: int = _help("Search width W: candidates per rollout group.", 16)
    contexts_per_step: int = _help("Contexts rolled out per step.", 64)
    steps: int = _help("RL steps; the rollout budget is steps x contexts x W.", 80)
    lr: float = _help("AdamW learning rate (tune it per method, BENCHMARKS.md).", 1e-4)
    weight_decay: float = _help("AdamW weight decay.", 0.0)
    grad_clip: float = _help("Gradient-norm clip before each step.", 1.0)
    ppo_epochs: int = _help("Passes over a step's batch; with 1 the PPO ratio is 1 (no old-policy pass).", 1)
    clip_low: float = _help("PPO-clip lower bound epsilon.", 0.2)
    clip_high: float = _help("PPO-clip upper bound epsilon (asymmetric, as OpenOneRec-RL).", 0.28)
    kl_beta: float = _help("Weight of the per-token k3 penalty to the frozen SFT reference.", 1e-3)
    normaliser: str = _help(
        "groups_tokens: the loss sum / (contexts in the step x SID tokens), the same for every method; "
        "token_mean: the literal per-token mean over the actor batch.",
        "groups_tokens",
    )
    eval_every: int = _help("Steps between evaluations on the eval split.", 10)
    eval_beams: int = _help("Beams of the eval decode (the anchors use 50).", 50)
    eval_rows: int | None = _help("Score only the first N eval entries (None: all).", None)
    eval_unit: str = _help(
        "windows: every window of the eval users (each prefix predicts the next item, de-duplicated per user); "
        "rows: one entry per interaction row.",
        "windows",
    )
    probe_every: int = _help(
        "Steps between after-update probes (top-1 change, anchors entering the top-W); 0: never. "
        "Timed apart from the step.",
        1,
    )
    max_history: int = _help("Items of history in a prompt (the served cut).", 10)
    seed: int = _help("Seed of the context order and the replay draw.", 0)

    def __post_init__(self) -> None:
        self.spec  # validates the method and the signal overrides  # noqa: B018
        if self.normaliser not in NORMALISERS:
            raise ValueError(f"normaliser must be one of {NORMALISERS}, got {self.normaliser!r}")
        if self.eval_unit not in EVAL_UNITS:
            raise ValueError(f"eval_unit must be one of {EVAL_UNITS}, got {self.eval_unit!r}")
        for name in ("width", "contexts_per_step", "steps", "ppo_epochs", "eval_every", "eval_beams"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.width < 2:
            raise ValueError("width must be >= 2: a group of one has nothing to contrast or normalise")
        if self.eval_beams < 10:
            raise ValueError("eval_beams must be >= 10 (HR@10 needs ten items)")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.probe_every < 0:
            raise ValueError(f"probe_every must be >= 0, got {self.probe_every}")
        ObjectiveConfig(self.clip_low, self.clip_high, self.kl_beta)  # validates

    @property
    def spec(self) -> SignalSpec:
        return method_spec(self.method, **self.signal)

    @property
    def objective(self) -> ObjectiveConfig:
        return ObjectiveConfig(self.clip_low, self.clip_high, self.kl_beta, self.spec.logistic_tau)

    def to_dict(self) -> dict:
        return {**asdict(self), "spec": self.spec.to_dict()}


PRESETS: dict[str, RLConfig] = {
    # Seconds: tests and smoke runs.
    "tiny": RLConfig(width=4, contexts_per_step=8, steps=3, eval_every=2, eval_beams=10, eval_rows=32),
    "default": RLConfig(),
}


def preset(name: str, **overrides) -> RLConfig:
    """A preset with ``overrides`` (None values skipped); SignalSpec fields go into ``signal``."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown RL preset {name!r}; choose one of {sorted(PRESETS)}") from None
    given = {k: v for k, v in overrides.items() if v is not None}
    signal = {**base.signal, **given.pop("signal", {}), **{k: given.pop(k) for k in list(given) if k in SIGNAL_FIELDS}}
    return replace(base, **given, signal=signal)
