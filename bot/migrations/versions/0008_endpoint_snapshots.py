"""status: endpoint_snapshots, endpoint_snapshot_passes

Revision ID: 0008_endpoint_snapshots
Revises: 0001_foundation
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_endpoint_snapshots"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "endpoint_snapshots",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("endpoint", sa.String(128)),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32)),
        sa.Column("config_name", sa.String(128)),
        sa.Column("variants", sa.JSON, nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text),
        sa.Column("source", sa.String(16), nullable=False),
    )
    op.create_table(
        "endpoint_snapshot_passes",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("models", sa.Integer, nullable=False),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("throttled", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("interval_seconds", sa.Float, nullable=False),
        sa.Column("passes", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("endpoint_snapshot_passes")
    op.drop_table("endpoint_snapshots")
