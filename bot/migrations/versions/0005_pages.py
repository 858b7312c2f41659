"""pages: a page per incident (kind + dedup key) and the state of its deliveries

Revision ID: 0005_pages
Revises: 0001_foundation
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_pages"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("dedup_key", sa.String(255), nullable=False),
        sa.Column("model", sa.String(128)),
        sa.Column("rollout_id", sa.Integer),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("automatic", sa.Boolean, nullable=False),
        sa.Column("actor", sa.String(32)),
        sa.Column("source_channel", sa.String(32)),
        sa.Column("source_ts", sa.String(32)),
        sa.Column("source_link", sa.Text),
        sa.Column("notify", sa.String(255), nullable=False),
        sa.Column("dm_user", sa.String(32)),
        sa.Column("pagerduty", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_by", sa.String(32)),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True)),
        sa.Column("resolved_by", sa.String(32)),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("escalated_at", sa.DateTime(timezone=True)),
        sa.Column("alert_channel", sa.String(32), nullable=False),
        sa.Column("alert_ts", sa.String(32)),
        sa.Column("dm_channel", sa.String(32)),
        sa.Column("dm_ts", sa.String(32)),
        sa.Column("escalation_ts", sa.String(32)),
        sa.Column("pd_triggered_at", sa.DateTime(timezone=True)),
        sa.Column("pd_acknowledged_at", sa.DateTime(timezone=True)),
        sa.Column("pd_resolved_at", sa.DateTime(timezone=True)),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("alert_version", sa.Integer, nullable=False),
        sa.Column("dm_version", sa.Integer, nullable=False),
        sa.Column("settled_version", sa.Integer, nullable=False),
        sa.Column("claim_holder", sa.String(64)),
        sa.Column("claim_until", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("dedup_key", name="uq_pages_dedup_key"),
    )
    op.create_index("ix_pages_model", "pages", ["model"])
    op.create_index("ix_pages_rollout_id", "pages", ["rollout_id"])
    op.create_index("ix_pages_state_created_at", "pages", ["state", "created_at"])
    op.create_index("ix_pages_settled_version", "pages", ["settled_version"])


def downgrade() -> None:
    op.drop_index("ix_pages_settled_version", table_name="pages")
    op.drop_index("ix_pages_state_created_at", table_name="pages")
    op.drop_index("ix_pages_rollout_id", table_name="pages")
    op.drop_index("ix_pages_model", table_name="pages")
    op.drop_table("pages")
