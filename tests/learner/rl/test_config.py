import pytest

from learner.rl.config import RLConfig, preset
from recast.signals.spec import METHODS


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"method": "ppo"}, "recast-literal"),  # an unknown method lists the valid ones
        ({"signal": {"contrast_loss": "hinge"}}, "contrast_loss"),
        ({"signal": {"hits": "dpo"}}, "above"),
        ({"signal": {"colour": 1}}, "unknown signal field"),
        ({"normaliser": "sum"}, "normaliser"),
        ({"eval_unit": "users"}, "eval_unit"),
        ({"width": 1}, "width"),
        ({"steps": 0}, "steps"),
        ({"eval_beams": 5}, "eval_beams"),
        ({"lr": 0.0}, "lr"),
        ({"clip_low": 1.5}, "clip"),
        ({"kl_beta": -1.0}, "kl_beta"),
        ({"probe_every": -1}, "probe_every"),
        ({"signal": {"negative_weight": 2.0}}, "negative_weight"),
    ],
)
def test_bad_settings_are_refused_with_the_field_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        RLConfig(**overrides)


def test_preset_overrides_skip_unset_values_and_route_signal_fields():
    config = preset("tiny", method="grpo", lr=None)
    assert config.method == "grpo" and config.lr == RLConfig().lr and config.width == 4
    assert config.spec == METHODS["grpo"]
    with_repair = preset("tiny", method="grpo", repair=True, signal={"ranking_reward": True})
    assert with_repair.signal == {"repair": True, "ranking_reward": True}
    assert with_repair.spec.repair and with_repair.spec.hits == "group_normalised"
    with pytest.raises(ValueError, match="unknown RL preset"):
        preset("huge")


def test_the_method_decides_the_signal_and_the_dict_records_it():
    assert RLConfig().spec == METHODS["recast"]
    literal = RLConfig(method="recast-literal")
    assert literal.spec.hits == literal.spec.anchors == "pair" and literal.spec.repair
    assert literal.to_dict()["spec"]["contrast_loss"] == "boundary"
    assert RLConfig(method="grpo", signal={"repair": True}).objective.logistic_tau == 1.0
