"""The closed loop: every refresh attempt in training_runs, model lineage and rejections, the activation trail.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of schemas.tables.JSONType: a revision must not change when the models do.
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("model_registry", sa.Column("parent_version", sa.String(length=128), nullable=True,
                                              comment="the model it was trained from (its manifest's)"))  # fmt: skip
    op.add_column("model_registry", sa.Column("reason", sa.Text(), nullable=True,
                                              comment="why it was rejected, when it was"))  # fmt: skip
    op.create_table(
        "model_activations",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("previous_version", sa.String(length=128), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("action IN ('activate', 'publish', 'rollback')", name=op.f("ck_model_activations_action")),
        sa.ForeignKeyConstraint(["version"], ["model_registry.version"],
                                name=op.f("fk_model_activations_version_model_registry")),  # fmt: skip
        sa.ForeignKeyConstraint(["previous_version"], ["model_registry.version"],
                                name=op.f("fk_model_activations_previous_version_model_registry")),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_activations")),
    )
    op.create_index(op.f("ix_model_activations_version"), "model_activations", ["version"], unique=False)

    columns = [
        sa.Column("trigger", sa.String(length=32), server_default="manual", nullable=False,
                  comment="beat | manual | ..."),
        sa.Column("task_id", sa.String(length=64), nullable=True, comment="the Celery task id, when a worker ran it"),
        sa.Column("worker", sa.String(length=255), nullable=True, comment="host:pid of the process that ran it"),
        sa.Column("phase", sa.String(length=32), nullable=True,
                  comment="the step in progress, then the last one reached"),
        sa.Column("window_start", TS, nullable=True, comment="data window (event time): groups opened >= this"),
        sa.Column("window_end", TS, nullable=True, comment="... and < this"),
        sa.Column("heldout_from", TS, nullable=True, comment="groups opened >= this were the gate's, not trained"),
        sa.Column("counts", JSON, server_default="{}", nullable=False),
        sa.Column("timings", JSON, server_default="{}", nullable=False, comment="seconds per phase"),
        sa.Column("decision", sa.String(length=16), nullable=True, comment="published | rejected (status succeeded)"),
        sa.Column("reason", sa.Text(), nullable=True,
                  comment="the gate's reason, or why the run was skipped/refused"),
    ]  # fmt: skip
    for column in columns:
        op.add_column("training_runs", column)
    op.alter_column("training_runs", "kind", comment="refresh | sft | rl", existing_comment="sft | recast | ...",
                    existing_type=sa.String(length=32), existing_nullable=False)  # fmt: skip
    op.drop_constraint(op.f("ck_training_runs_status"), "training_runs", type_="check")
    op.create_check_constraint(
        op.f("ck_training_runs_status"), "training_runs",
        "status IN ('running', 'succeeded', 'failed', 'skipped', 'refused')",
    )  # fmt: skip
    op.create_check_constraint(
        op.f("ck_training_runs_decision"), "training_runs",
        "decision IS NULL OR decision IN ('published', 'rejected')",
    )  # fmt: skip
    op.create_index("ix_training_runs_kind_status", "training_runs", ["kind", "status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_training_runs_kind_status", table_name="training_runs")
    op.drop_constraint(op.f("ck_training_runs_decision"), "training_runs", type_="check")
    op.drop_constraint(op.f("ck_training_runs_status"), "training_runs", type_="check")
    # Rows in the new states cannot stay under the old constraint: they read as failed attempts.
    op.execute("UPDATE training_runs SET status = 'failed' WHERE status IN ('skipped', 'refused')")
    op.create_check_constraint(
        op.f("ck_training_runs_status"), "training_runs", "status IN ('running', 'succeeded', 'failed')"
    )
    op.alter_column("training_runs", "kind", comment="sft | recast | ...", existing_comment="refresh | sft | rl",
                    existing_type=sa.String(length=32), existing_nullable=False)  # fmt: skip
    for name in ("reason", "decision", "timings", "counts", "heldout_from", "window_end", "window_start", "phase",
                 "worker", "task_id", "trigger"):  # fmt: skip
        op.drop_column("training_runs", name)
    op.drop_index(op.f("ix_model_activations_version"), table_name="model_activations")
    op.drop_table("model_activations")
    op.drop_column("model_registry", "reason")
    op.drop_column("model_registry", "parent_version")
