"""The pipeline settings: defaults, the RECAST_ environment, and rewards keyed by the event types."""

import pytest
from pydantic import ValidationError

from schemas.events import OUTCOME_TYPES
from schemas.settings import Settings


def test_reward_defaults_cover_every_outcome_type():
    weights = Settings().reward_weights
    assert set(weights) == set(OUTCOME_TYPES)
    assert weights == {"purchase": 1.0, "add_to_cart": 0.5, "click": 0.25}


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("RECAST_REWARD_CLICK", "0.1")
    monkeypatch.setenv("RECAST_ATTRIBUTION_WINDOW_S", "60")
    monkeypatch.setenv("RECAST_DATABASE_URL", "postgresql+psycopg://u@db:5432/x")
    settings = Settings()
    assert settings.reward_weights["click"] == 0.1
    assert settings.attribution_window_s == 60
    assert settings.database_url.endswith("@db:5432/x")


def test_negative_rewards_and_empty_windows_are_refused(monkeypatch):
    monkeypatch.setenv("RECAST_REWARD_PURCHASE", "-1")
    with pytest.raises(ValidationError, match="reward_purchase"):
        Settings()
    monkeypatch.delenv("RECAST_REWARD_PURCHASE")
    monkeypatch.setenv("RECAST_ATTRIBUTION_WINDOW_S", "0")
    with pytest.raises(ValidationError, match="attribution_window_s"):
        Settings()
