"""Items added online: each added item's text (title, description, brand, categories) in the catalog's ledger.

The data set's items are read from its items.json; an item added online (``POST /v1/admin/items``, ``recast items
add``) exists nowhere else, so its entry is kept with its code, and every serving process and the nightly refresh
rebuild the grown catalog from the ledger. The append-only trigger now also refuses to change an entry.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = """
CREATE OR REPLACE FUNCTION catalog_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION '%: rows are never deleted (catalog versions are append-only)', TG_TABLE_NAME;
    END IF;
    IF TG_TABLE_NAME = 'catalog_versions' THEN
        RAISE EXCEPTION 'catalog_versions: version % is recorded and never changes', OLD.version;
    END IF;
    IF NEW.item_id <> OLD.item_id OR NEW.code <> OLD.code OR NEW.added_in <> OLD.added_in{entry} THEN
        RAISE EXCEPTION 'catalog_items: item %''s code and the version that added it never change{what}', OLD.item_id;
    END IF;
    IF OLD.retired_in IS NOT NULL AND (NEW.retired_in, NEW.reason, NEW.retired_at)
            IS DISTINCT FROM (OLD.retired_in, OLD.reason, OLD.retired_at) THEN
        RAISE EXCEPTION 'catalog_items: item % was retired in version % and stays so', OLD.item_id, OLD.retired_in;
    END IF;
    RETURN NEW;
END $$;
"""


def upgrade() -> None:
    op.add_column("catalog_items", sa.Column("entry", postgresql.JSONB(astext_type=sa.Text()), nullable=True,
                                             comment="an item added online: its items.json entry (null: the "
                                             "data set's item)"))  # fmt: skip
    op.execute(APPEND_ONLY.format(entry=" OR NEW.entry IS DISTINCT FROM OLD.entry", what=" (nor its entry)"))


def downgrade() -> None:
    op.execute(APPEND_ONLY.format(entry="", what=""))
    op.drop_column("catalog_items", "entry")
