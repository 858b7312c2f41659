"""retention: slack_outbox rows are found by age (jobs/retention.py prunes delivered rows past the window)

Revision ID: 0012_retention
Revises: 0001_foundation
"""
from alembic import op

revision = "0012_retention"
down_revision = "0001_foundation"
branch_labels = None
# slack_outbox is created by 0007_outbox. slack_deliveries (received_at) and rollout_events (rollout_id) are
# already indexed for what the job asks of them.
depends_on = "0007_outbox"


def upgrade() -> None:
    op.create_index("ix_slack_outbox_created_at", "slack_outbox", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_slack_outbox_created_at", table_name="slack_outbox")
