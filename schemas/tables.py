"""Storage tables (SQLAlchemy 2): the events as received, the reward groups built from them,
what could not be read, and the models and training runs that learn from them.

Every change here needs an Alembic revision in ``migrations/versions``; a test compares
this metadata with the migrated database, so a forgotten revision fails the suite.

JSON columns are JSONB on PostgreSQL (indexable, compact) and plain JSON elsewhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from schemas.events import OUTCOME_TYPES

JSONType = JSON().with_variant(JSONB(), "postgresql")
ID = String(128)
MODEL_STATUSES = ("candidate", "active", "retired", "rejected")
# running: in progress (or its worker died: the next run that takes the lock marks it failed);
# succeeded: a candidate was trained and gated (``decision`` says published or rejected);
# skipped: nothing to learn from yet (``reason`` says why); refused: another refresh held the lock.
RUN_STATUSES = ("running", "succeeded", "failed", "skipped", "refused")
RUN_DECISIONS = ("published", "rejected")
ACTIVATION_ACTIONS = ("activate", "publish", "rollback")

# Explicit constraint names, so migrations can drop and alter them by name on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType, datetime: DateTime(timezone=True)}


class ImpressionRow(Base):
    """A served list as received (``schemas.events.Impression``); ``request_id`` deduplicates."""

    __tablename__ = "impressions"

    request_id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, index=True)
    segment: Mapped[str] = mapped_column(String(64))
    history: Mapped[list[Any]]
    items: Mapped[list[Any]] = mapped_column(comment="[{item_id, score, rank}] in rank order")
    model_version: Mapped[str] = mapped_column(ID)
    schema_version: Mapped[int] = mapped_column(Integer)
    ts: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # No foreign key: an impression is a record of what was served, and it is stored even when its service knew
    # no recorded version. A reward group reaches it through its request_id, so groups keep no copy.
    catalog_version: Mapped[int | None] = mapped_column(
        Integer, comment="the catalog version the list was served under; NULL: schema 1, or none was recorded"
    )


class OutcomeRow(Base):
    """A shopper's action as received (``schemas.events.Outcome``); ``event_id`` deduplicates."""

    __tablename__ = "outcomes"
    __table_args__ = (CheckConstraint(_one_of("type", OUTCOME_TYPES), name="type"),)

    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, index=True)
    request_id: Mapped[str | None] = mapped_column(ID, index=True)
    item_id: Mapped[str] = mapped_column(ID)
    type: Mapped[str] = mapped_column(String(16))
    schema_version: Mapped[int] = mapped_column(Integer)
    ts: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Set once the outcome counts in a group; NULL while it waits for its impression (it may arrive first).
    attributed_request_id: Mapped[str | None] = mapped_column(ID, index=True)


class RewardGroup(Base):
    """One served list and what it earned inside its attribution window: one learner sample."""

    __tablename__ = "reward_groups"
    __table_args__ = (
        # The ingestion worker's hot lookups: a user's open groups, and the groups whose window has ended.
        Index("ix_reward_groups_user_open", "user_id", "window_open"),
        Index("ix_reward_groups_open_closes_at", "window_open", "closes_at"),
    )

    request_id: Mapped[str] = mapped_column(ID, ForeignKey("impressions.request_id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ID)
    segment: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(ID, index=True)
    history: Mapped[list[Any]] = mapped_column(comment="the context the policy saw")
    items: Mapped[list[Any]] = mapped_column(comment="served item ids, in rank order")
    rewards: Mapped[list[Any]] = mapped_column(comment="one reward per served item, aligned with items")
    organic_positives: Mapped[list[Any]] = mapped_column(comment="[{item_id, type, event_id}] engaged off the list")
    all_zero: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    window_open: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    opened_at: Mapped[datetime]
    closes_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class DeadLetter(Base):
    """A message that could not be read, kept byte for byte with the reason it was refused."""

    __tablename__ = "dead_letters"
    # One row per source message, so replaying a topic dead-letters nothing twice.
    __table_args__ = (UniqueConstraint("topic", "partition", "offset", name="uq_dead_letters_source"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[bytes] = mapped_column(LargeBinary, comment="raw bytes: a bad payload may not even be UTF-8")
    reason: Mapped[str] = mapped_column(Text)
    ts: Mapped[datetime] = mapped_column(server_default=func.now())


class IngestWatermark(Base):
    """How far event time has got on one partition, for one consumer group: the latest event time its
    workers have *stored* from it (or the wall clock, once the partition was read to its end and stayed quiet).

    Shared through the database so that several ingest workers close groups by one watermark: the least over
    every partition that holds data. A worker far ahead therefore never closes a group whose outcomes still
    wait unread in a partition that another worker reads."""

    __tablename__ = "ingest_watermarks"

    group_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ModelVersion(Base):
    """A checkpoint the service may load; ``sha256`` is the manifest's hash, checked before serving."""

    __tablename__ = "model_registry"
    __table_args__ = (CheckConstraint(_one_of("status", MODEL_STATUSES), name="status"),)

    version: Mapped[str] = mapped_column(ID, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), server_default="candidate")
    metrics: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    parent_version: Mapped[str | None] = mapped_column(ID, comment="the model it was trained from (its manifest's)")
    reason: Mapped[str | None] = mapped_column(Text, comment="why it was rejected, when it was")


class ModelActivation(Base):
    """Every change of the active model: who made it, why, and what served before (the rollback trail)."""

    __tablename__ = "model_activations"
    __table_args__ = (CheckConstraint(_one_of("action", ACTIVATION_ACTIONS), name="action"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(ID, ForeignKey("model_registry.version"), index=True)
    previous_version: Mapped[str | None] = mapped_column(ID, ForeignKey("model_registry.version"))
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text, server_default="")
    at: Mapped[datetime] = mapped_column(server_default=func.now())


class TrainingRun(Base):
    """One learner run (a nightly refresh, every attempt): what it read, what it produced, what the gate decided."""

    __tablename__ = "training_runs"
    __table_args__ = (
        CheckConstraint(_one_of("status", RUN_STATUSES), name="status"),
        CheckConstraint(f"decision IS NULL OR {_one_of('decision', RUN_DECISIONS)}", name="decision"),
        Index("ix_training_runs_kind_status", "kind", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), comment="refresh | sft | rl")
    status: Mapped[str] = mapped_column(String(16), server_default="running")
    base_version: Mapped[str | None] = mapped_column(ID, ForeignKey("model_registry.version"))
    result_version: Mapped[str | None] = mapped_column(ID, ForeignKey("model_registry.version"))
    config: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    metrics: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    groups_used: Mapped[int] = mapped_column(BigInteger, server_default="0")
    reward_mean: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    trigger: Mapped[str] = mapped_column(String(32), server_default="manual", comment="beat | manual | ...")
    task_id: Mapped[str | None] = mapped_column(String(64), comment="the Celery task id, when a worker ran it")
    worker: Mapped[str | None] = mapped_column(String(255), comment="host:pid of the process that ran it")
    phase: Mapped[str | None] = mapped_column(String(32), comment="the step in progress, then the last one reached")
    window_start: Mapped[datetime | None] = mapped_column(comment="data window (event time): groups opened >= this")
    window_end: Mapped[datetime | None] = mapped_column(comment="... and < this")
    heldout_from: Mapped[datetime | None] = mapped_column(comment="groups opened >= this were the gate's, not trained")
    counts: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    timings: Mapped[dict[str, Any]] = mapped_column(server_default="{}", comment="seconds per phase")
    decision: Mapped[str | None] = mapped_column(String(16), comment="published | rejected (status succeeded)")
    reason: Mapped[str | None] = mapped_column(Text, comment="the gate's reason, or why the run was skipped/refused")


# Where a repair's anchor came from (recast.signals.groups.ANCHOR_SOURCES; schemas imports none of our packages).
ANCHOR_SOURCES = ("offline_target", "organic_purchase", "organic_add_to_cart", "organic_click")


class RepairLedgerRow(Base):
    """One repair a refresh made: the anchor it injected into an all-zero rollout of a reward group's context.

    Written in the same transaction as the run's final row, so a run's ledger exists exactly when the run does."""

    __tablename__ = "repair_ledger"
    __table_args__ = (
        CheckConstraint(_one_of("anchor_source", ANCHOR_SOURCES), name="anchor_source"),
        Index("ix_repair_ledger_run_id_segment", "run_id", "segment"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("training_runs.id"))
    request_id: Mapped[str] = mapped_column(ID, ForeignKey("reward_groups.request_id"), index=True)
    step: Mapped[int] = mapped_column(Integer, comment="the RL step that made it")
    segment: Mapped[str] = mapped_column(String(64), comment="the request's segment ('unknown' when none was sent)")
    history_segment: Mapped[str] = mapped_column(String(16), comment="new | returning | loyal")
    category: Mapped[str] = mapped_column(String(128), comment="the history's top-level category, or 'unknown'")
    anchor_item: Mapped[str] = mapped_column(ID)
    anchor_source: Mapped[str] = mapped_column(String(32))
    replaced_item: Mapped[str] = mapped_column(ID, comment="the rolled-out candidate the anchor displaced")
    anchor_logprob: Mapped[float] = mapped_column(Float, comment="under the policy, before the update")
    replaced_logprob: Mapped[float] = mapped_column(Float, comment="under the policy, before the update")
    anchor_rank_before: Mapped[int | None] = mapped_column(
        Integer, comment="1-based rank under the parent's policy; NULL: beyond its beam"
    )
    anchor_rank_after: Mapped[int | None] = mapped_column(Integer, comment="... under the child's policy")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AuditSnapshot(Base):
    """A refresh's audit figures per segment, as computed when it ran: an old version's report is rebuilt from it."""

    __tablename__ = "audit_snapshots"

    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("training_runs.id"), primary_key=True)
    version: Mapped[str | None] = mapped_column(ID, index=True, comment="the candidate the run trained")
    parent_version: Mapped[str | None] = mapped_column(ID, comment="the model it started from")
    decision: Mapped[str | None] = mapped_column(String(16), comment="published | rejected")
    flagged: Mapped[list[Any]] = mapped_column(server_default="[]", comment="['dimension:segment', ...]")
    figures: Mapped[dict[str, Any]] = mapped_column(comment="learner.audit.figures.audit_figures's result")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


# Why an item left the catalog (recast.catalog_version.RETIRE_REASONS; schemas imports none of our packages).
RETIRE_REASONS = ("retired", "out_of_stock")


class CatalogVersionRow(Base):
    """One version of the catalog. Versions form one chain, 1, 2, 3 ..., each the child of the one before, and
    rows are never changed (a trigger refuses updates and deletes; see migration 0005).

    What a version holds is kept once per item in ``catalog_items`` (a ledger), not copied per version, so a
    retirement writes one version row and touches one ledger row per item. "What did version N hold" is
    every ledger row with ``added_in <= N``, retired when ``retired_in <= N``. "Does N+1 extend N" holds by
    construction: the ledger only gains rows, a row's code never changes, and a retirement is written once.
    ``digest`` is the hash of N's (item, code, state) set (``recast.catalog_version.catalog_digest``), so a reader
    can check what it rebuilt from the ledger against what was recorded."""

    __tablename__ = "catalog_versions"
    __table_args__ = (
        # One chain: version 1 is the only root, and every other version's parent is the one just before it.
        CheckConstraint("(version = 1 AND parent IS NULL) OR parent = version - 1", name="chain"),
    )

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    parent: Mapped[int | None] = mapped_column(Integer, ForeignKey("catalog_versions.version"))
    digest: Mapped[str] = mapped_column(String(64), comment="sha256 of its (item, code, state) set")
    items: Mapped[int] = mapped_column(Integer, comment="items it holds, the retired ones included")
    retired: Mapped[int] = mapped_column(Integer, comment="... of which retired")
    note: Mapped[str] = mapped_column(Text, server_default="", comment="why this version was made")
    actor: Mapped[str] = mapped_column(String(128), comment="who made it")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class CatalogItemRow(Base):
    """One item of the catalog: its code, the version that added it, and the version that retired it and why.
    A code is written once, and a retirement once (see :class:`CatalogVersionRow`)."""

    __tablename__ = "catalog_items"
    __table_args__ = (
        CheckConstraint(f"reason IS NULL OR {_one_of('reason', RETIRE_REASONS)}", name="reason"),
        CheckConstraint("(retired_in IS NULL) = (reason IS NULL) AND (retired_in IS NULL) = (retired_at IS NULL)",
                        name="retirement"),  # fmt: skip
        CheckConstraint("retired_in IS NULL OR retired_in > added_in", name="order"),
    )

    item_id: Mapped[str] = mapped_column(ID, primary_key=True)
    code: Mapped[str] = mapped_column(Text, comment="its SID and disambiguation token, e.g. <a_1><b_2><c_3><d_0>")
    added_in: Mapped[int] = mapped_column(Integer, ForeignKey("catalog_versions.version"), index=True)
    retired_in: Mapped[int | None] = mapped_column(Integer, ForeignKey("catalog_versions.version"), index=True)
    retired_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(String(16), comment="retired | out_of_stock")
    entry: Mapped[dict[str, Any] | None] = mapped_column(
        comment="an item added online: its items.json entry (null: the data set's item)")
