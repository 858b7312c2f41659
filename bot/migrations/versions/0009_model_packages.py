"""model_packages: the Model Registry package each deploy carried, and the approval modelbot gave it

Revision ID: 0009_model_packages
Revises: 0001_foundation
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_model_packages"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_packages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("variant", sa.String(128), nullable=False),
        sa.Column("model_package_arn", sa.String(2048), nullable=False),
        sa.Column("version", sa.Integer),
        sa.Column("created_endpoint", sa.Boolean, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rollout_id", sa.Integer),
        sa.Column("approval_status", sa.String(32)),
        sa.Column("approval_description", sa.Text),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("synced_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("dag_id", "run_id", name="uq_model_packages_dag_id_run_id"),
    )
    op.create_index("ix_model_packages_model_id", "model_packages", ["model", "id"])
    op.create_index("ix_model_packages_synced_at", "model_packages", ["synced_at"])


def downgrade() -> None:
    op.drop_index("ix_model_packages_synced_at", table_name="model_packages")
    op.drop_index("ix_model_packages_model_id", table_name="model_packages")
    op.drop_table("model_packages")
