"""scaling and cost: what modelbot set on each variant's scalable target and what it said about it
(scaling_targets, scaling_models), and the instance history `/model cost` counts instance hours from
(instance_segments)

Revision ID: 0014_scaling
Revises: 0001_foundation
"""
import sqlalchemy as sa
from alembic import op

revision = "0014_scaling"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scaling_targets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("variant", sa.String(128), nullable=False),
        sa.Column("applied", sa.JSON),
        sa.Column("applied_at", TS),
        sa.Column("observed", sa.JSON),
        sa.Column("observed_at", TS),
        sa.Column("drift_said", sa.JSON),
        sa.Column("drifts", sa.Integer, nullable=False),
        sa.UniqueConstraint("model", "endpoint", "variant", name="uq_scaling_targets_variant"),
    )
    op.create_index("ix_scaling_targets_model", "scaling_targets", ["model"])
    op.create_table(
        "scaling_models",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("announced_at", TS),
        sa.Column("problem", sa.Text),
        sa.Column("problem_key", sa.String(255)),
        sa.Column("problems_said", sa.Integer, nullable=False),
        sa.Column("checked_at", TS),
    )
    op.create_table(
        "instance_segments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("variant", sa.String(128), nullable=False),
        sa.Column("instance_type", sa.String(64)),
        sa.Column("instance_count", sa.Integer, nullable=False),
        sa.Column("serving", sa.Boolean, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("ended_at", TS),
    )
    op.create_index("ix_instance_segments_model_started_at", "instance_segments", ["model", "started_at"])
    op.create_index("ix_instance_segments_open", "instance_segments", ["model", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_instance_segments_open", table_name="instance_segments")
    op.drop_index("ix_instance_segments_model_started_at", table_name="instance_segments")
    op.drop_table("instance_segments")
    op.drop_table("scaling_models")
    op.drop_index("ix_scaling_targets_model", table_name="scaling_targets")
    op.drop_table("scaling_targets")
