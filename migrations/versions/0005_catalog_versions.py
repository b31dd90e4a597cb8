"""Catalog versions: the versions (one chain), the item ledger, and the version each impression was served under.

Both catalog tables are append-only. Triggers refuse to delete a row, to change a version, to change an item's
code or the version that added it, and to change a retirement once it is recorded. So "version N+1 extends N"
holds in the database whatever a client does.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)

APPEND_ONLY = """
CREATE FUNCTION catalog_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION '%: rows are never deleted (catalog versions are append-only)', TG_TABLE_NAME;
    END IF;
    IF TG_TABLE_NAME = 'catalog_versions' THEN
        RAISE EXCEPTION 'catalog_versions: version % is recorded and never changes', OLD.version;
    END IF;
    IF NEW.item_id <> OLD.item_id OR NEW.code <> OLD.code OR NEW.added_in <> OLD.added_in THEN
        RAISE EXCEPTION 'catalog_items: item %''s code and the version that added it never change', OLD.item_id;
    END IF;
    IF OLD.retired_in IS NOT NULL AND (NEW.retired_in, NEW.reason, NEW.retired_at)
            IS DISTINCT FROM (OLD.retired_in, OLD.reason, OLD.retired_at) THEN
        RAISE EXCEPTION 'catalog_items: item % was retired in version % and stays so', OLD.item_id, OLD.retired_in;
    END IF;
    RETURN NEW;
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "catalog_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("parent", sa.Integer(), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=False, comment="sha256 of its (item, code, state) set"),
        sa.Column("items", sa.Integer(), nullable=False, comment="items it holds, the retired ones included"),
        sa.Column("retired", sa.Integer(), nullable=False, comment="... of which retired"),
        sa.Column("note", sa.Text(), server_default="", nullable=False, comment="why this version was made"),
        sa.Column("actor", sa.String(length=128), nullable=False, comment="who made it"),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("(version = 1 AND parent IS NULL) OR parent = version - 1",
                           name=op.f("ck_catalog_versions_chain")),
        sa.ForeignKeyConstraint(["parent"], ["catalog_versions.version"],
                                name=op.f("fk_catalog_versions_parent_catalog_versions")),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_catalog_versions")),
    )  # fmt: skip
    op.create_table(
        "catalog_items",
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("code", sa.Text(), nullable=False,
                  comment="its SID and disambiguation token, e.g. <a_1><b_2><c_3><d_0>"),
        sa.Column("added_in", sa.Integer(), nullable=False),
        sa.Column("retired_in", sa.Integer(), nullable=True),
        sa.Column("retired_at", TS, nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=True, comment="retired | out_of_stock"),
        sa.CheckConstraint("reason IS NULL OR reason IN ('retired', 'out_of_stock')",
                           name=op.f("ck_catalog_items_reason")),
        sa.CheckConstraint("(retired_in IS NULL) = (reason IS NULL) AND (retired_in IS NULL) = (retired_at IS NULL)",
                           name=op.f("ck_catalog_items_retirement")),
        sa.CheckConstraint("retired_in IS NULL OR retired_in > added_in", name=op.f("ck_catalog_items_order")),
        sa.ForeignKeyConstraint(["added_in"], ["catalog_versions.version"],
                                name=op.f("fk_catalog_items_added_in_catalog_versions")),
        sa.ForeignKeyConstraint(["retired_in"], ["catalog_versions.version"],
                                name=op.f("fk_catalog_items_retired_in_catalog_versions")),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_catalog_items")),
    )  # fmt: skip
    op.create_index(op.f("ix_catalog_items_added_in"), "catalog_items", ["added_in"], unique=False)
    op.create_index(op.f("ix_catalog_items_retired_in"), "catalog_items", ["retired_in"], unique=False)
    op.execute(APPEND_ONLY)
    for table in ("catalog_versions", "catalog_items"):
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION catalog_append_only()")  # fmt: skip
    op.add_column("impressions", sa.Column(
        "catalog_version", sa.Integer(), nullable=True,
        comment="the catalog version the list was served under; NULL: schema 1, or none was recorded",
    ))  # fmt: skip


def downgrade() -> None:
    op.drop_column("impressions", "catalog_version")
    op.drop_index(op.f("ix_catalog_items_retired_in"), table_name="catalog_items")
    op.drop_index(op.f("ix_catalog_items_added_in"), table_name="catalog_items")
    op.drop_table("catalog_items")  # its trigger goes with it
    op.drop_table("catalog_versions")
    op.execute("DROP FUNCTION catalog_append_only()")
