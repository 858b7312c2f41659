"""endpoint health: SageMaker's failure reason for an endpoint (or its last update), kept with its snapshot

Variant health (VariantStatus, desired instance counts) lives in the snapshot's `variants` JSON; only the
endpoint's own FailureReason needs a column.

Revision ID: 0014_endpoint_health
Revises: 0001_foundation
"""
import sqlalchemy as sa
from alembic import op

revision = "0014_endpoint_health"
down_revision = "0001_foundation"
branch_labels = None
# endpoint_snapshots is created by 0008_endpoint_snapshots.
depends_on = "0008_endpoint_snapshots"


def upgrade() -> None:
    with op.batch_alter_table("endpoint_snapshots") as batch:
        batch.add_column(sa.Column("failure_reason", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("endpoint_snapshots") as batch:
        batch.drop_column("failure_reason")
