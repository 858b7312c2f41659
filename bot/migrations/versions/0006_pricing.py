"""pricing: instance_prices, price_refreshes

Revision ID: 0006_pricing
Revises: 0001_foundation
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_pricing"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instance_prices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("instance_type", sa.String(64), nullable=False),
        sa.Column("vcpu", sa.Float, nullable=False),
        sa.Column("memory_gib", sa.Float, nullable=False),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("gpu_memory_gib", sa.Float),
        sa.Column("usd_per_hour", sa.Float, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("region", "instance_type", name="uq_instance_prices_region_instance_type"),
    )
    op.create_index("ix_instance_prices_fit", "instance_prices", ["region", "vcpu", "memory_gib"])
    op.create_index("ix_instance_prices_region_price", "instance_prices", ["region", "usd_per_hour"])
    op.create_table(
        "price_refreshes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_price_refreshes_region_fetched_at", "price_refreshes", ["region", "fetched_at"])


def downgrade() -> None:
    op.drop_index("ix_price_refreshes_region_fetched_at", table_name="price_refreshes")
    op.drop_table("price_refreshes")
    op.drop_index("ix_instance_prices_region_price", table_name="instance_prices")
    op.drop_index("ix_instance_prices_fit", table_name="instance_prices")
    op.drop_table("instance_prices")
