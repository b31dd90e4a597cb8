"""SignalSpec: everything that decides what a step's groups teach, and the named methods.

A method is a SignalSpec registered under a name (``METHODS``); a variant is a method
with some fields overridden (``method_spec("recast", anchors="supervised")``). Every
name a field takes is checked against its registry, and an unknown one fails listing
the valid ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from recast.signals.reward import REWARDS
from recast.signals.strategy import ANCHOR_SIGNALS, CONTRAST_LOSSES, HIT_SIGNALS


def _help(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class SignalSpec:
    reward: str = _help("Verifiable reward (recast.signals.reward.REWARDS): exact | structural.", "exact")
    repair: bool = _help("Inject the known positive into groups where no member is one (ReCast's repair).", True)
    hits: str = _help("Signal of rolled-out groups (HIT_SIGNALS): group_normalised | pair | above | none.", "pair")
    anchors: str = _help(
        "Signal of repaired groups (ANCHOR_SIGNALS): group_normalised | pair | boundary | supervised | none.", "pair"
    )
    contrast_loss: str = _help("The pair's loss: pg (literal +-1) | boundary | logistic.", "boundary")
    margin: float = _help("boundary: push n* down only while log pi(n*) + margin > log pi(p*).", 1.0)
    negative_weight: float = _help("pair: n*'s advantage is -negative_weight (0: the positive alone).", 1.0)
    logistic_tau: float = _help("Temperature of every reference-anchored pairwise logistic term.", 1.0)
    ranking_reward: bool = _help("group_normalised: ReRe's rank penalty on the negatives of a group with a hit.", False)
    skip_flat: bool = _help(
        "group_normalised: leave out groups whose advantages are all 0. Their rows carry only the k3 term, "
        "1e-6 to 1e-4 of one step's squared gradient norm, but over a run they hold the policy nearer the "
        "reference: without them it can drift several times further (BENCHMARKS.md, issue 12). A cheaper relative "
        "of the baseline, not the same one; off, the actor pays for them as the literal baseline does.",
        False,
    )
    anchor_weight: float = _help("Scale of every term a repaired anchor enters (pair, boundary, supervised).", 1.0)
    reach_temperature: float = _help(
        "Reachability: an anchor's weight is exp(-gap / T), gap = its log-prob below the W-th candidate; 0: off.", 0.0
    )
    anchor_cap: float = _help("Most share of the step's squared gradient norm the anchors may supply (1: no cap).", 1.0)
    hinge_margin: float = _help("boundary: the anchor's hinge stops once it leads the W-th candidate by this.", 0.0)
    replay: int = _help("Older windows (the SFT users') replayed per step as supervised rows; 0: none.", 0)
    replay_weight: float = _help("Advantage (cross-entropy weight) of each replayed window.", 1.0)
    supervised_dropout: bool = _help(
        "Run the supervised parts (anchors, replay) with the policy's dropout on, as SFT trains; the contrast "
        "parts always run without it, so their log-probabilities are the rollout's.",
        False,
    )

    def __post_init__(self) -> None:
        for name, registry in (("reward", REWARDS), ("hits", HIT_SIGNALS), ("anchors", ANCHOR_SIGNALS)):
            if getattr(self, name) not in registry:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {sorted(registry)}")
        if self.contrast_loss not in CONTRAST_LOSSES:
            raise ValueError(f"unknown contrast_loss {self.contrast_loss!r}; choose one of {list(CONTRAST_LOSSES)}")
        if not 0.0 <= self.negative_weight <= 1.0:
            raise ValueError(f"negative_weight must lie in [0, 1], got {self.negative_weight}")
        if self.contrast_loss == "logistic" and self.negative_weight not in (0.0, 1.0):
            raise ValueError("with the logistic loss negative_weight must be 1 (a pair) or 0 (the positive alone)")
        if not 0.0 <= self.anchor_cap <= 1.0:
            raise ValueError(f"anchor_cap must lie in [0, 1], got {self.anchor_cap}")
        for name in ("logistic_tau",):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("anchor_weight", "reach_temperature", "replay", "replay_weight", "margin", "hinge_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


SIGNAL_FIELDS = tuple(f.name for f in fields(SignalSpec))

METHODS: dict[str, SignalSpec] = {
    # The group-normalised baseline (OpenOneRec-RL / GRPO): rolled-out hits only.
    "grpo": SignalSpec(repair=False, hits="group_normalised", anchors="group_normalised"),
    # The literal reading measured in issue 4: repair, then +1 / -1 on (p*, n*) for every group,
    # the boundary rule with margin 1 (it rarely fires: the positive is an anchor far below n*).
    "recast-literal": SignalSpec(repair=True, hits="pair", anchors="pair", contrast_loss="boundary", margin=1.0),
    # The chosen form (issue 12): real hits contrasted against every negative above them, anchors as a small
    # supervised term with replay of older windows. Chosen on the tuning users as the best of the forms that
    # repair (BENCHMARKS.md, issue 12); on the held-out users it ties SFT and the baseline (3 seeds, W = 16 and
    # 32): no form of repair-then-contrast measured here beats the baseline beyond the noise.
    "recast": SignalSpec(repair=True, hits="above", anchors="supervised", anchor_weight=0.25, replay=16),
}


def method_spec(method: str, **overrides) -> SignalSpec:
    """The named method's SignalSpec with ``overrides`` applied (None values ignored).

    >>> method_spec("grpo", repair=True).repair, method_spec("grpo").hits
    (True, 'group_normalised')
    """
    try:
        base = METHODS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}") from None
    unknown = sorted(set(overrides) - set(SIGNAL_FIELDS))
    if unknown:
        raise ValueError(f"unknown signal field(s) {unknown}; choose from {list(SIGNAL_FIELDS)}")
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
