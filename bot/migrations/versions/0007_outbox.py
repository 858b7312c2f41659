"""outbox: slack_outbox, the queued Slack deliveries (posts, edits, charts, pages) of bot/slack/outbox.py

Revision ID: 0007_outbox
Revises: 0001_foundation
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_outbox"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "slack_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32)),
        sa.Column("thread_ts", sa.String(32)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("blocks", sa.JSON),
        sa.Column("broadcast", sa.Boolean, nullable=False),
        sa.Column("payload", sa.JSON),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("claimed_at", TS),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TS),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("posted_at", TS),
        sa.Column("message_ts", sa.String(32)),
        sa.UniqueConstraint("key", name="uq_slack_outbox_key"),
    )
    op.create_index("ix_slack_outbox_subject", "slack_outbox", ["subject"])
    op.create_index("ix_slack_outbox_status_next_attempt_at", "slack_outbox", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("slack_outbox")
