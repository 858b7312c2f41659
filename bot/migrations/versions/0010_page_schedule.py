"""page schedule: when a page's owed delivery is tried next, since when it is owed, and where its alert goes

Revision ID: 0010_page_schedule
Revises: 0001_foundation
"""
import sqlalchemy as sa
from alembic import op

revision = "0010_page_schedule"
down_revision = "0001_foundation"
branch_labels = None
# The pages table is created by 0005_pages.
depends_on = "0005_pages"


def upgrade() -> None:
    with op.batch_alter_table("pages") as batch:
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("owed_since", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("alert_place", sa.String(16), nullable=False, server_default="alert_channel"))
        batch.add_column(sa.Column("alert_thread_ts", sa.String(32)))
        batch.add_column(sa.Column("refusals", sa.Text))
        batch.add_column(sa.Column("dm_refused", sa.String(64)))
    # Pages owed before this migration are due now, oldest first.
    op.execute("UPDATE pages SET next_attempt_at = created_at, owed_since = created_at "
               "WHERE settled_version < version")
    op.create_index("ix_pages_next_attempt_at", "pages", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_pages_next_attempt_at", table_name="pages")
    with op.batch_alter_table("pages") as batch:
        for column in ("dm_refused", "refusals", "alert_thread_ts", "alert_place", "owed_since", "next_attempt_at"):
            batch.drop_column(column)
