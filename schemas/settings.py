"""The one ``Settings`` object: every knob a process reads from its environment.

Variables carry the ``RECAST_`` prefix (``RECAST_DATA_DIR``, ...). Read once per
process through :func:`get_settings`; nothing reads the environment at import.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECAST_", extra="ignore")

    data_dir: Path = Field(Path("data/amazon18-industrial"), description="Data set directory (catalog + interactions).")
    run_dir: Path = Field(Path("runs"), description="Where local runs, checkpoints and embedded services live.")
    beam_width: int = Field(50, ge=1, description="Beams per request for ranking (the anchors use 50).")
    max_history: int = Field(10, ge=1, description="History items the transition and text scorers read (the most "
                             "recent); a prompt keeps as many as its checkpoint was trained on.")  # fmt: skip
    fusion_policy_weight: float | None = Field(
        None, ge=0.0, le=1.0,
        description="Override the policy share of the served ranking: of the fixed mixture, or of the blend after a "
        "checkpoint's learned ranker (default: the tuned value, or the ranker's own).",
    )
    fusion_text_weight: float | None = Field(
        None, ge=0.0, le=1.0,
        description="Override the text share of the fixed served mixture (default: tuned value); a checkpoint with a "
        "learned ranker weighs the text scorer itself.",
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
    beam_cache_entries: int = Field(
        16384, ge=0, description="Prompts whose decoded beams the engine keeps, least recently used out first (0: "
        "none). A one-item policy has one prompt per catalog item, so a few thousand hold them all.",
    )
    max_request_history: int = Field(200, ge=1, description="History items a recommend request may send, at most.")
    api_keys: str = Field(
        "", description="Comma-separated sha256 hex digests of the storefront API keys (`recast keys new` makes one)."
    )
    admin_token_sha256: str = Field("", description="sha256 hex digest of the admin token (hot-swap, audit routes).")
    registry_poll_s: float = Field(
        10.0, ge=0.0, description="Seconds between looks at the model registry for a new active model (0: never)."
    )
    catalog_versions: bool = Field(
        True, description="Serve the catalog's versions from Postgres (its retirements; the service is not ready "
        "until it has read them once). false: the data set's catalog as it is, with no database (benchmarks)."
    )
    catalog_poll_s: float = Field(
        2.0, ge=0.0, description="Seconds between looks at the catalog's versions in Postgres, for retirements "
        "made elsewhere (the CLI, another replica); 0: only at start."
    )
    vllm_kv_cache_gib: int = Field(1, ge=1, description="KV cache the vllm engine reserves on the CPU, GiB.")

    # Hardening (issue 14): the API's edges, admission control and operations.
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted (bytes); a larger one is refused with 413 "
        "before it is read. 1 MiB holds a batch of 1000 outcomes with room to spare.",
    )
    queue_max: int = Field(
        256, ge=1, description="Recommend requests that may wait for the decoder at once; one more is shed with 503 "
        "and Retry-After instead of queueing without end.",
    )
    rate_limit: str = Field(
        "", description="Per storefront key, e.g. '200/second' or '10000/minute' (the `limits` notation); empty: "
        "no limit. A key over its limit gets 429 with Retry-After.",
    )
    rate_limits: str = Field(
        "", description="Per-key exceptions to rate_limit: 'name=rate' pairs, comma-separated "
        "('shop-a=50/second,batch=5/second'); names are those of RECAST_API_KEYS.",
    )
    cors_origins: str = Field(
        "*", description="Origins allowed to call the API from a browser (comma-separated; '*': any; empty: none).",
    )
    access_log: bool = Field(True, description="One log line per request (method, path, status, ms, key name).")
    log_format: Literal["json", "text"] = Field("json", description="Log lines as JSON objects or plain text.")
    log_level: str = Field("INFO", description="Level of our own loggers (DEBUG, INFO, WARNING, ...).")
    log_third_party_level: str = Field(
        "WARNING", description="Level of other libraries' loggers (kafka, sqlalchemy, urllib3, ...): quiet by default.",
    )
    shutdown_grace_s: float = Field(
        30.0, gt=0, description="On SIGTERM the API stops accepting and answers requests in flight for this long.",
    )
    event_max_age_s: int = Field(
        86_400, ge=1, description="The API refuses outcomes stamped longer ago than this (they could no longer be "
        "credited to a list).",
    )
    event_max_skew_s: int = Field(
        300, ge=0, description="Events stamped further ahead of the time they were received are refused (API) or "
        "dead-lettered (ingest); such a time would also be kept out of the watermark.",
    )
    ingest_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the ingest worker's Prometheus endpoint (0: none).",
    )
    ingest_metrics_host: str = Field("127.0.0.1", description="Interface of the ingest worker's metrics endpoint.")

    # The closed loop (issue 11): Celery beat runs the refresh; it learns from the reward groups.
    refresh_schedule: str = Field(
        "0 3 * * *",
        description="When beat runs the refresh: a crontab of five fields in UTC ('0 3 * * *': nightly at 03:00), "
        "or 'every <seconds>s' (demos and tests).",
    )
    refresh_period_s: int = Field(
        86_400, ge=1, description="A refresh learns from complete periods of event time (UTC-aligned; a day by "
        "default): groups opened before the last period boundary, never a half-logged one.",
    )
    refresh_min_groups: int = Field(
        50, ge=1, description="Fewer new closed reward groups than this and the refresh ends as skipped."
    )
    refresh_method: Literal["recast", "grpo", "none"] = Field(
        "recast", description="The refresh's RL step: recast (repair, then contrast), grpo (group-normalised) "
        "or none (SFT and scorers only).",
    )
    refresh_heldout_share: float = Field(
        0.2, gt=0.0, lt=1.0, description="Latest share of a refresh's groups (by event time) kept for the gate."
    )
    refresh_replay_share: float = Field(
        0.5, ge=0.0, lt=1.0, description="Share of the refresh's SFT windows drawn from older data (no forgetting)."
    )
    refresh_sft_epochs: int = Field(2, ge=0, description="Passes of continued SFT over the new windows and replay.")
    refresh_rl_steps: int = Field(20, ge=0, description="RL steps of the refresh (0: none).")
    train_file: Path | None = Field(
        None, description="The initial model's training interactions (CSV): the replay pool and the scorers' base.",
    )
    gate_split: Path | None = Field(
        None, description="The gate's fixed offline split (CSV of users no model trains on); none: the gate scores "
        "the window's held-out slice only.",
    )
    gate_tolerance: float = Field(
        0.01, description="The gate publishes a candidate unless it is worse than the served model by more than "
        "this (HR@10 and NDCG@10 of the served ranking, on each slice); negative: it must be better by that much.",
    )
    gate_max_rows: int = Field(1000, ge=10, description="Rows of the offline split the gate scores, at most.")
    celery_visibility_timeout_s: int = Field(
        7200, ge=60, description="Seconds before Redis hands an unacknowledged task (its worker died) to another "
        "worker; longer than any refresh.",
    )


    # The audit of repaired signals (issue 13).
    audit_new_max_history: int = Field(
        2, ge=0, description="A request whose history holds at most this many items is in the history segment 'new'."
    )
    audit_loyal_min_history: int = Field(
        7, ge=1, description="At least this many history items: 'loyal' (in between: 'returning')."
    )
    audit_disparity_threshold: float = Field(
        0.1, gt=0.0, description="A segment is flagged when its repaired share, or its change of served HR@10 under "
        "the new model, differs from the whole run's by more than this.",
    )
    audit_min_groups: int = Field(
        20, ge=1, description="A segment with fewer reward groups in a run is reported but never flagged "
        "(a few groups make any share look extreme).",
    )

    @model_validator(mode="after")
    def _history_thresholds(self) -> Settings:
        if self.audit_loyal_min_history <= self.audit_new_max_history:
            raise ValueError(f"RECAST_AUDIT_LOYAL_MIN_HISTORY ({self.audit_loyal_min_history}) must be above "
                             f"RECAST_AUDIT_NEW_MAX_HISTORY ({self.audit_new_max_history})")  # fmt: skip
        return self

    @field_validator("refresh_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @property
    def models_dir(self) -> Path:
        """Where refreshes write their child checkpoints (one folder per version)."""
        return self.run_dir / "models"

    @property
    def api_key_digests(self) -> frozenset[str]:
        return frozenset(self.api_key_names)

    @property
    def api_key_names(self) -> dict[str, str]:
        """digest -> the key's name, from ``name:digest`` entries (a bare digest is named ``key-<first 8 hex>``).
        Logs and metrics carry the name, never the key.

        >>> Settings(api_keys="shop-a:ABC1, def2").api_key_names
        {'abc1': 'shop-a', 'def2': 'key-def2'}
        """
        names = {}
        for entry in filter(None, (e.strip() for e in self.api_keys.split(","))):
            name, _, digest = entry.rpartition(":")
            digest = digest.strip().lower()
            names[digest] = name.strip() or f"key-{digest[:8]}"
        return names

    @property
    def rate_limit_overrides(self) -> dict[str, str]:
        """key name -> rate, from :attr:`rate_limits`."""
        pairs = (e.partition("=") for e in self.rate_limits.split(",") if e.strip())
        return {name.strip(): rate.strip() for name, _, rate in pairs}

    @property
    def reward_weights(self) -> dict[str, float]:
        """Reward per outcome type (the keys are ``schemas.events.OUTCOME_TYPES``)."""
        return {"click": self.reward_click, "add_to_cart": self.reward_add_to_cart, "purchase": self.reward_purchase}


def parse_schedule(text: str) -> tuple[str, int | tuple[str, ...]]:
    """``("every", seconds)`` for ``every <n>s``, or ``("cron", five fields)`` for a crontab.

    >>> parse_schedule("every 30s"), parse_schedule("0 3 * * *")
    (('every', 30), ('cron', ('0', '3', '*', '*', '*')))
    >>> parse_schedule("nightly")
    Traceback (most recent call last):
    ...
    ValueError: 'nightly' is neither a crontab of five fields ('0 3 * * *') nor 'every <seconds>s'
    """
    every = re.fullmatch(r"every\s+(\d+)\s*s", text.strip())
    if every and int(every.group(1)) > 0:
        return "every", int(every.group(1))
    fields = text.split()
    if len(fields) == 5 and all(re.fullmatch(r"[0-9*/,\-]+", f) for f in fields):
        return "cron", tuple(fields)
    raise ValueError(f"{text!r} is neither a crontab of five fields ('0 3 * * *') nor 'every <seconds>s'")


@lru_cache
def get_settings() -> Settings:
    return Settings()
