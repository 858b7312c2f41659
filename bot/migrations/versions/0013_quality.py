"""quality: realized metrics per model/variant/day, the prediction-label join, problems, S3 cursors, references,
decay episodes and passes

Revision ID: 0013_quality
Revises: 0001_foundation
"""
import sqlalchemy as sa
from alembic import op

revision = "0013_quality"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quality_days",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("variant", sa.String(128), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("metric", sa.String(32)),
        sa.Column("value", sa.Float),
        sa.Column("predictions", sa.Integer, nullable=False),
        sa.Column("labelled", sa.Integer, nullable=False),
        sa.Column("not_binary", sa.Integer, nullable=False),
        sa.Column("out_of_range", sa.Integer, nullable=False),
        sa.Column("undefined", sa.Text),
        sa.Column("dirty", sa.Boolean, nullable=False),
        sa.Column("computed_at", TS),
        sa.UniqueConstraint("model", "variant", "day", name="uq_quality_days_model_variant_day"),
    )
    op.create_index("ix_quality_days_model_day", "quality_days", ["model", "day"])
    op.create_index("ix_quality_days_dirty", "quality_days", ["dirty"])
    op.create_table(
        "quality_predictions",
        sa.Column("key", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("day_id", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
    )
    op.create_index("ix_quality_predictions_day_id", "quality_predictions", ["day_id"])
    op.create_table(
        "quality_labels",
        sa.Column("key", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("arrived", sa.Date, nullable=False),
        sa.Column("label", sa.Float, nullable=False),
    )
    op.create_table(
        "quality_problems",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("example", sa.Text),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("model", "day", "kind", name="uq_quality_problems_model_day_kind"),
    )
    op.create_table(
        "quality_cursors",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("prefix", sa.String(1024), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("variant", sa.String(128)),
        sa.Column("settled", sa.String(13), nullable=False),
        sa.Column("newest", sa.String(1024)),
        sa.Column("files", sa.Integer, nullable=False),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("read_at", TS),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "quality_files",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("prefix", sa.String(1024), primary_key=True),
        sa.Column("key", sa.String(1024), primary_key=True),
        sa.Column("hour", sa.String(13), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("done", sa.Boolean, nullable=False),
        sa.Column("read_at", TS, nullable=False),
    )
    op.create_table(
        "quality_references",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("variant", sa.String(128), primary_key=True),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("labels", sa.Integer),
        sa.Column("window_start", sa.Date),
        sa.Column("window_end", sa.Date),
        sa.Column("fixed", sa.Boolean, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "quality_episodes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("variant", sa.String(128), nullable=False),
        sa.Column("open_key", sa.String(260)),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("reference", sa.Float, nullable=False),
        sa.Column("labels", sa.Integer, nullable=False),
        sa.Column("tolerance", sa.Float, nullable=False),
        sa.Column("window_start", sa.Date, nullable=False),
        sa.Column("window_end", sa.Date, nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("announced_at", TS),
        sa.Column("message_ts", sa.String(32)),
        sa.Column("closed_at", TS),
        sa.Column("closed_how", sa.String(16)),
        sa.Column("closed_value", sa.Float),
        sa.Column("retrain_requested_at", TS),
        sa.Column("retrain_by", sa.String(64)),
        sa.Column("retrain_dag_id", sa.String(250)),
        sa.Column("retrain_run_id", sa.String(250)),
        sa.Column("retrain_error", sa.Text),
        sa.UniqueConstraint("open_key", name="uq_quality_episodes_open_key"),
    )
    op.create_index("ix_quality_episodes_model_opened_at", "quality_episodes", ["model", "opened_at"])
    op.create_table(
        "quality_passes",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
        sa.Column("seconds", sa.Float),
        sa.Column("capture", sa.Text),
        sa.Column("capture_source", sa.String(32)),
        sa.Column("notes", sa.JSON),
        sa.Column("windows", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("backlog", sa.Boolean, nullable=False),
        sa.Column("pruned_on", sa.Date),
    )


def downgrade() -> None:
    for table in ("quality_passes", "quality_episodes", "quality_references", "quality_files", "quality_cursors",
                  "quality_problems", "quality_labels", "quality_predictions", "quality_days"):
        op.drop_table(table)
