"""reliability: PagerDuty delivered apart from Slack (its own claim, back-off and owed time per page), the
deploy that waits for a rollout in progress to end (rollouts.next_deploy), and who is carrying a rollout's
intent out right now (rollouts.carry_holder/carry_until)

Revision ID: 0011_reliability
Revises: 0001_foundation
"""
import sqlalchemy as sa
from alembic import op

revision = "0011_reliability"
down_revision = "0001_foundation"
branch_labels = None
# pages: 0005_pages (and its delivery schedule, 0010_page_schedule); rollouts: 0004_rollouts.
depends_on = ("0004_rollouts", "0010_page_schedule")


def upgrade() -> None:
    with op.batch_alter_table("pages") as batch:
        batch.add_column(sa.Column("pd_claim_holder", sa.String(64)))
        batch.add_column(sa.Column("pd_claim_until", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("pd_attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("pd_next_attempt_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("pd_owed_since", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("pd_last_error", sa.Text))
    # PagerDuty events owed before this migration are due now.
    op.execute("UPDATE pages SET pd_next_attempt_at = created_at, pd_owed_since = created_at "
               "WHERE pagerduty = true AND (pd_triggered_at IS NULL OR "
               "(acknowledged_at IS NOT NULL AND pd_acknowledged_at IS NULL) OR "
               "(resolved_at IS NOT NULL AND pd_resolved_at IS NULL))")
    op.create_index("ix_pages_pd_next_attempt_at", "pages", ["pd_next_attempt_at"])
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(sa.Column("next_deploy", sa.JSON))
        batch.add_column(sa.Column("carry_holder", sa.String(64)))
        batch.add_column(sa.Column("carry_until", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        for column in ("carry_until", "carry_holder", "next_deploy"):
            batch.drop_column(column)
    op.drop_index("ix_pages_pd_next_attempt_at", table_name="pages")
    with op.batch_alter_table("pages") as batch:
        for column in ("pd_last_error", "pd_owed_since", "pd_next_attempt_at", "pd_attempts", "pd_claim_until",
                       "pd_claim_holder"):
            batch.drop_column(column)
