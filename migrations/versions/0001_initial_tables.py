"""Initial tables: impressions, outcomes, reward groups, dead letters, model registry, training runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 22:24:53
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of schemas.tables.JSONType: a revision must not change when the models do.
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column(
            "payload", sa.LargeBinary(), nullable=False, comment="raw bytes: a bad payload may not even be UTF-8"
        ),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("topic", "partition", "offset", name="uq_dead_letters_source"),
    )
    op.create_table(
        "impressions",
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("history", JSON, nullable=False),
        sa.Column("items", JSON, nullable=False, comment="[{item_id, score, rank}] in rank order"),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_impressions")),
    )
    op.create_index(op.f("ix_impressions_user_id"), "impressions", ["user_id"], unique=False)
    op.create_table(
        "model_registry",
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="candidate", nullable=False),
        sa.Column("metrics", JSON, server_default="{}", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('candidate', 'active', 'retired', 'rejected')", name=op.f("ck_model_registry_status")
        ),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_model_registry")),
    )
    op.create_table(
        "outcomes",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("attributed_request_id", sa.String(length=128), nullable=True),
        sa.CheckConstraint("type IN ('click', 'add_to_cart', 'purchase')", name=op.f("ck_outcomes_type")),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_outcomes")),
    )
    op.create_index(op.f("ix_outcomes_attributed_request_id"), "outcomes", ["attributed_request_id"], unique=False)
    op.create_index(op.f("ix_outcomes_request_id"), "outcomes", ["request_id"], unique=False)
    op.create_index(op.f("ix_outcomes_user_id"), "outcomes", ["user_id"], unique=False)
    op.create_table(
        "reward_groups",
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("history", JSON, nullable=False, comment="the context the policy saw"),
        sa.Column("items", JSON, nullable=False, comment="served item ids, in rank order"),
        sa.Column("rewards", JSON, nullable=False, comment="one reward per served item, aligned with items"),
        sa.Column(
            "organic_positives", JSON, nullable=False, comment="[{item_id, type, event_id}] engaged off the list"
        ),
        sa.Column("all_zero", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("window_open", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["impressions.request_id"], name=op.f("fk_reward_groups_request_id_impressions")
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_reward_groups")),
    )
    op.create_index(op.f("ix_reward_groups_model_version"), "reward_groups", ["model_version"], unique=False)
    op.create_index("ix_reward_groups_open_closes_at", "reward_groups", ["window_open", "closes_at"], unique=False)
    op.create_index("ix_reward_groups_user_open", "reward_groups", ["user_id", "window_open"], unique=False)
    op.create_table(
        "training_runs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False, comment="sft | recast | ..."),
        sa.Column("status", sa.String(length=16), server_default="running", nullable=False),
        sa.Column("base_version", sa.String(length=128), nullable=True),
        sa.Column("result_version", sa.String(length=128), nullable=True),
        sa.Column("config", JSON, server_default="{}", nullable=False),
        sa.Column("metrics", JSON, server_default="{}", nullable=False),
        sa.Column("groups_used", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reward_mean", sa.Float(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'succeeded', 'failed')", name=op.f("ck_training_runs_status")),
        sa.ForeignKeyConstraint(
            ["base_version"], ["model_registry.version"], name=op.f("fk_training_runs_base_version_model_registry")
        ),
        sa.ForeignKeyConstraint(
            ["result_version"], ["model_registry.version"], name=op.f("fk_training_runs_result_version_model_registry")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_runs")),
    )


def downgrade() -> None:
    op.drop_table("training_runs")
    op.drop_index("ix_reward_groups_user_open", table_name="reward_groups")
    op.drop_index("ix_reward_groups_open_closes_at", table_name="reward_groups")
    op.drop_index(op.f("ix_reward_groups_model_version"), table_name="reward_groups")
    op.drop_table("reward_groups")
    op.drop_index(op.f("ix_outcomes_user_id"), table_name="outcomes")
    op.drop_index(op.f("ix_outcomes_request_id"), table_name="outcomes")
    op.drop_index(op.f("ix_outcomes_attributed_request_id"), table_name="outcomes")
    op.drop_table("outcomes")
    op.drop_table("model_registry")
    op.drop_index(op.f("ix_impressions_user_id"), table_name="impressions")
    op.drop_table("impressions")
    op.drop_table("dead_letters")
