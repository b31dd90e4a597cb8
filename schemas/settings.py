"""The one ``Settings`` object: every knob a process reads from its environment.

Variables carry the ``RECAST_`` prefix (``RECAST_DATA_DIR``, ...). Read once per
process through :func:`get_settings`; nothing reads the environment at import.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

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
    fusion_text_weight: float | None = Field(
        None, ge=0.0, le=1.0, description="Override the text share of the served mixture (default: tuned value)."
    )
    torch_threads: int = Field(2, ge=1, description="Intra-op threads for torch on the CPU.")

    # The event pipeline (issue 5). Defaults suit a local machine; `recast up` prints the values of its stack.
    database_url: str = Field(
        "postgresql+psycopg://postgres@127.0.0.1:5432/recast", description="SQLAlchemy URL of the Postgres database."
    )
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port].")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL (the Celery broker).")
    impressions_topic: str = Field("recast.impressions", min_length=1, description="Topic of served lists.")
    outcomes_topic: str = Field("recast.outcomes", min_length=1, description="Topic of shopper actions.")
    topic_partitions: int = Field(4, ge=1, description="Partitions per topic when the stack creates them.")
    reward_purchase: float = Field(1.0, ge=0.0, description="Reward of a purchase of a served item.")
    reward_add_to_cart: float = Field(0.5, ge=0.0, description="Reward of an add-to-cart of a served item.")
    reward_click: float = Field(0.25, ge=0.0, description="Reward of a click on a served item.")
    spool_dir: Path = Field(
        Path("runs/spool"), description="Where the API buffers events on disk while Kafka is unreachable."
    )
    publisher_queue_size: int = Field(
        10_000, ge=1, description="Events the API holds in memory for Kafka before spilling to the spool."
    )
    publisher_timeout_ms: int = Field(
        5000, ge=100, description="Kafka request/metadata/ack wait; a dead broker is detected within about this."
    )
    publisher_retry_s: float = Field(1.0, gt=0, description="Seconds between probes of a broker that is down.")
    attribution_window_s: int = Field(
        1800, ge=1, description="Seconds after an impression during which the user's outcomes count for it."
    )

    # The service (issue 6).
    checkpoint: Path | None = Field(
        None, description="Checkpoint directory served at start (the registry may swap it)."
    )
    engine: Literal["torch", "vllm", "generate"] = Field(
        "torch", description="Decoder: torch (built in), vllm, or generate (the naive baseline, for benchmarks)."
    )
    batch_max_size: int = Field(32, ge=1, description="Requests decoded together at most (1: no micro-batching).")
    batch_max_wait_ms: float = Field(
        2.0, ge=0.0, description="How long a request waits for others to share its batch, at most."
    )
    max_request_history: int = Field(200, ge=1, description="History items a recommend request may send, at most.")
    api_keys: str = Field(
        "", description="Comma-separated sha256 hex digests of the storefront API keys (`recast keys new` makes one)."
    )
    admin_token_sha256: str = Field("", description="sha256 hex digest of the admin token (hot-swap, audit routes).")
    registry_poll_s: float = Field(
        10.0, ge=0.0, description="Seconds between looks at the model registry for a new active model (0: never)."
    )
    vllm_kv_cache_gib: int = Field(1, ge=1, description="KV cache the vllm engine reserves on the CPU, GiB.")

    @property
    def api_key_digests(self) -> frozenset[str]:
        return frozenset(d.strip().lower() for d in self.api_keys.split(",") if d.strip())

    @property
    def reward_weights(self) -> dict[str, float]:
        """Reward per outcome type (the keys are ``schemas.events.OUTCOME_TYPES``)."""
        return {"click": self.reward_click, "add_to_cart": self.reward_add_to_cart, "purchase": self.reward_purchase}


@lru_cache
def get_settings() -> Settings:
    return Settings()
