"""The audit of repaired signals: the repair ledger and each refresh's audit snapshot.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies: a revision must not change when the models do.
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TS = sa.DateTime(timezone=True)
SOURCES = "anchor_source IN ('offline_target', 'organic_purchase', 'organic_add_to_cart', 'organic_click')"


def upgrade() -> None:
    op.create_table(
        "repair_ledger",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False, comment="the RL step that made it"),
        sa.Column("segment", sa.String(length=64), nullable=False,
                  comment="the request's segment ('unknown' when none was sent)"),
        sa.Column("history_segment", sa.String(length=16), nullable=False, comment="new | returning | loyal"),
        sa.Column("category", sa.String(length=128), nullable=False,
                  comment="the history's top-level category, or 'unknown'"),
        sa.Column("anchor_item", sa.String(length=128), nullable=False),
        sa.Column("anchor_source", sa.String(length=32), nullable=False),
        sa.Column("replaced_item", sa.String(length=128), nullable=False,
                  comment="the rolled-out candidate the anchor displaced"),
        sa.Column("anchor_logprob", sa.Float(), nullable=False, comment="under the policy, before the update"),
        sa.Column("replaced_logprob", sa.Float(), nullable=False, comment="under the policy, before the update"),
        sa.Column("anchor_rank_before", sa.Integer(), nullable=True,
                  comment="1-based rank under the parent's policy; NULL: beyond its beam"),
        sa.Column("anchor_rank_after", sa.Integer(), nullable=True, comment="... under the child's policy"),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(SOURCES, name=op.f("ck_repair_ledger_anchor_source")),
        sa.ForeignKeyConstraint(["run_id"], ["training_runs.id"], name=op.f("fk_repair_ledger_run_id_training_runs")),
        sa.ForeignKeyConstraint(["request_id"], ["reward_groups.request_id"],
                                name=op.f("fk_repair_ledger_request_id_reward_groups")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repair_ledger")),
    )  # fmt: skip
    op.create_index(op.f("ix_repair_ledger_request_id"), "repair_ledger", ["request_id"], unique=False)
    op.create_index("ix_repair_ledger_run_id_segment", "repair_ledger", ["run_id", "segment"], unique=False)
    op.create_table(
        "audit_snapshots",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=True, comment="the candidate the run trained"),
        sa.Column("parent_version", sa.String(length=128), nullable=True, comment="the model it started from"),
        sa.Column("decision", sa.String(length=16), nullable=True, comment="published | rejected"),
        sa.Column("flagged", JSON, server_default="[]", nullable=False, comment="['dimension:segment', ...]"),
        sa.Column("figures", JSON, nullable=False, comment="learner.audit.figures.audit_figures's result"),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["training_runs.id"],
                                name=op.f("fk_audit_snapshots_run_id_training_runs")),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_audit_snapshots")),
    )  # fmt: skip
    op.create_index(op.f("ix_audit_snapshots_version"), "audit_snapshots", ["version"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_snapshots_version"), table_name="audit_snapshots")
    op.drop_table("audit_snapshots")
    op.drop_index("ix_repair_ledger_run_id_segment", table_name="repair_ledger")
    op.drop_index(op.f("ix_repair_ledger_request_id"), table_name="repair_ledger")
    op.drop_table("repair_ledger")
