"""The one ``Settings`` object: every knob a process reads from its environment.

Variables carry the ``RECAST_`` prefix (``RECAST_DATA_DIR``, ...). Read once per
process through :func:`get_settings`; nothing reads the environment at import.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECAST_", extra="ignore")

    data_dir: Path = Field(Path("data/amazon18-industrial"), description="Data set directory (catalog + interactions).")
    run_dir: Path = Field(Path("runs"), description="Where local runs, checkpoints and embedded services live.")
    beam_width: int = Field(50, ge=1, description="Beams per request for ranking (the anchors use 50).")
    max_history: int = Field(10, ge=1, description="History items a prompt keeps (the most recent).")
    fusion_policy_weight: float | None = Field(
        None, ge=0.0, le=1.0, description="Override the policy share of the served mixture (default: tuned value)."
    )
    torch_threads: int = Field(2, ge=1, description="Intra-op threads for torch on the CPU.")


@lru_cache
def get_settings() -> Settings:
    return Settings()
