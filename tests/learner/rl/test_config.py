import pytest

from learner.rl.config import RLConfig, preset


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"method": "ppo"}, "method"),
        ({"contrast_loss": "hinge"}, "contrast_loss"),
        ({"normaliser": "sum"}, "normaliser"),
        ({"width": 1}, "width"),
        ({"steps": 0}, "steps"),
        ({"eval_beams": 5}, "eval_beams"),
        ({"lr": 0.0}, "lr"),
        ({"clip_low": 1.5}, "clip"),
        ({"kl_beta": -1.0}, "kl_beta"),
        ({"negative_weight": 2.0}, "negative_weight"),
    ],
)
def test_bad_settings_are_refused_with_the_field_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        RLConfig(**overrides)


def test_preset_overrides_skip_unset_values():
    config = preset("tiny", method="grpo", lr=None)
    assert config.method == "grpo" and config.lr == RLConfig().lr and config.width == 4
    with pytest.raises(ValueError, match="unknown RL preset"):
        preset("huge")
