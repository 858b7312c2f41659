"""runs: Airflow runs, their thread messages (outbox), evaluations, candidates, the run watcher's state

Revision ID: 0003_runs
Revises: 0001_foundation
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_runs"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("conf", sa.JSON, nullable=False),
        sa.Column("requested_by", sa.String(128)),
        sa.Column("started_via", sa.String(32), nullable=False),
        sa.Column("run_type", sa.String(32)),
        sa.Column("queued_at", TZ),
        sa.Column("started_at", TZ),
        sa.Column("ended_at", TZ),
        sa.Column("channel", sa.String(32)),
        sa.Column("thread_ts", sa.String(32)),
        sa.Column("parent_digest", sa.String(64)),
        sa.Column("failed_tasks", sa.JSON, nullable=False),
        sa.Column("settled", sa.Boolean, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("seen_at", TZ, nullable=False),
        sa.UniqueConstraint("dag_id", "run_id", name="uq_runs_dag_id_run_id"),
    )
    op.create_index("ix_runs_model_queued_at", "runs", ["model", "queued_at"])
    op.create_index("ix_runs_settled", "runs", ["settled"])
    op.create_table(
        "run_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("event", sa.String(250), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("thread_ts", sa.String(32)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("blocks", sa.JSON),
        sa.Column("claimed_by", sa.String(128), nullable=False),
        sa.Column("claimed_at", TZ, nullable=False),
        sa.Column("posted_at", TZ),
        sa.Column("message_ts", sa.String(32)),
        sa.UniqueConstraint("dag_id", "run_id", "event", name="uq_run_events_dag_id_run_id_event"),
    )
    op.create_table(
        "run_evaluations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("candidate", sa.Float, nullable=False),
        sa.Column("production", sa.Float),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("promote", sa.Boolean, nullable=False),
        sa.Column("diagnostics_uri", sa.Text),
        sa.Column("at", TZ, nullable=False),
        sa.UniqueConstraint("dag_id", "run_id", name="uq_run_evaluations_dag_id_run_id"),
    )
    op.create_index("ix_run_evaluations_model_at", "run_evaluations", ["model", "at"])
    op.create_table(
        "run_candidates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("stable_variant", sa.String(128), nullable=False),
        sa.Column("candidate_variant", sa.String(128), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.Column("consumed", sa.Boolean, nullable=False),
        sa.Column("consumed_at", TZ),
        sa.Column("rollout_started_at", TZ),
        sa.Column("rollout_error", sa.Text),
        sa.Column("rollout_claimed_at", TZ),
        sa.UniqueConstraint("dag_id", "run_id", name="uq_run_candidates_dag_id_run_id"),
    )
    op.create_index("ix_run_candidates_model_recorded_at", "run_candidates", ["model", "recorded_at"])
    op.create_table(
        "run_watcher_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("cursor", TZ),
        sa.Column("down_since", TZ),
        sa.Column("down_reason", sa.Text),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TZ),
        sa.Column("last_pass_at", TZ),
    )


def downgrade() -> None:
    op.drop_table("run_watcher_state")
    op.drop_index("ix_run_candidates_model_recorded_at", table_name="run_candidates")
    op.drop_table("run_candidates")
    op.drop_index("ix_run_evaluations_model_at", table_name="run_evaluations")
    op.drop_table("run_evaluations")
    op.drop_table("run_events")
    op.drop_index("ix_runs_settled", table_name="runs")
    op.drop_index("ix_runs_model_queued_at", table_name="runs")
    op.drop_table("runs")
