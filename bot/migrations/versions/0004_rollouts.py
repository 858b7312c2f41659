"""rollouts: rollouts, rollout_events, rollout_messages

Revision ID: 0004_rollouts
Revises: 0001_foundation
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_rollouts"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("active_model", sa.String(128)),
        sa.Column("run_key", sa.String(255)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("started_by", sa.String(32)),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("stable_variant", sa.String(128), nullable=False),
        sa.Column("candidate_variant", sa.String(128), nullable=False),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("step_index", sa.Integer, nullable=False),
        sa.Column("step_started_at", TS),
        sa.Column("timer_started_at", TS),
        sa.Column("resume_state", sa.String(16)),
        sa.Column("paused_reason", sa.Text),
        sa.Column("previous_config", sa.String(128)),
        sa.Column("final_config", sa.String(128)),
        sa.Column("target_weights", sa.JSON),
        sa.Column("thread_channel", sa.String(32)),
        sa.Column("thread_ts", sa.String(32)),
        sa.Column("owns_parent", sa.Boolean, nullable=False),
        sa.Column("evidence_ts", sa.String(32)),
        sa.Column("pause_ts", sa.String(32)),
        sa.Column("last_evidence", sa.JSON),
        sa.Column("pending", sa.JSON),
        sa.Column("last_error", sa.Text),
        sa.Column("ended_at", TS),
        sa.Column("ended_by", sa.String(32)),
        sa.Column("ended_reason", sa.Text),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("active_model", name="uq_rollouts_active_model"),
        sa.UniqueConstraint("run_key", name="uq_rollouts_run_key"),
    )
    op.create_index("ix_rollouts_model", "rollouts", ["model"])
    op.create_index("ix_rollouts_state", "rollouts", ["state"])
    op.create_table(
        "rollout_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id", ondelete="CASCADE",
                                                          name="fk_rollout_events_rollout_id_rollouts"), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("step_index", sa.Integer, nullable=False),
        sa.Column("candidate_percent", sa.Float, nullable=False),
        sa.Column("decision", sa.String(16)),
        sa.Column("stable_requests", sa.Integer),
        sa.Column("stable_5xx", sa.Integer),
        sa.Column("stable_4xx", sa.Integer),
        sa.Column("candidate_requests", sa.Integer),
        sa.Column("candidate_5xx", sa.Integer),
        sa.Column("candidate_4xx", sa.Integer),
        sa.Column("actor", sa.String(32)),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_rollout_events_rollout_id", "rollout_events", ["rollout_id"])
    op.create_table(
        "rollout_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id", ondelete="CASCADE",
                                                          name="fk_rollout_messages_rollout_id_rollouts"), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("ts", sa.String(32)),
        sa.Column("claimed_at", TS, nullable=False),
        sa.UniqueConstraint("rollout_id", "key", name="uq_rollout_messages_rollout_id_key"),
    )


def downgrade() -> None:
    op.drop_table("rollout_messages")
    op.drop_table("rollout_events")
    op.drop_table("rollouts")
