"""Airflow runs as modelbot saw them, the thread messages posted for them (an outbox), and their evidence.

run_events is the runs' table of the one Slack outbox (bot/slack/outbox.py), which makes every thread message
exactly-once: a message's row is claimed (inserted, with the text it will carry) before it is posted and marked
posted after. A claim left behind by a crash is taken over after the outbox's CLAIM_STALE, and the new owner
first looks in Slack for the message (it carries the event key in its metadata) before posting it, so the
message is neither lost nor posted twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, Text, UniqueConstraint, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.store.base import Base, utcnow


class RunRecord(Base):
    """One Airflow DAG run of a registered model, whoever started it."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("dag_id", "run_id", name="uq_runs_dag_id_run_id"),
        Index("ix_runs_model_queued_at", "model", "queued_at"),
        Index("ix_runs_settled", "settled"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    model: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(32), default="queued")
    conf: Mapped[dict] = mapped_column(JSON, default=dict)
    # A Slack user ID when the run was asked for in Slack, else who Airflow says started it.
    requested_by: Mapped[str | None] = mapped_column(String(128))
    started_via: Mapped[str] = mapped_column(String(32), default="airflow")  # slack | airflow
    run_type: Mapped[str | None] = mapped_column(String(32))
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    channel: Mapped[str | None] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    parent_digest: Mapped[str | None] = mapped_column(String(64))  # what the parent message shows now
    failed_tasks: Mapped[list] = mapped_column(JSON, default=list)
    # True once the run has finished and every message about it is posted: the watcher stops looking.
    settled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunEvent(Base):
    """Outbox: one row per message about a run (parent, task failure, evaluation, end, outage notice...)."""

    __tablename__ = "run_events"
    __table_args__ = (UniqueConstraint("dag_id", "run_id", "event", name="uq_run_events_dag_id_run_id_event"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    event: Mapped[str] = mapped_column(String(250))
    status: Mapped[str] = mapped_column(String(16), default="claimed")  # claimed | posted
    channel: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))  # None: the message is the thread's parent
    text: Mapped[str] = mapped_column(Text)
    blocks: Mapped[list | None] = mapped_column(JSON)
    claimed_by: Mapped[str] = mapped_column(String(128))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)
    posted_at: Mapped[datetime | None]
    message_ts: Mapped[str | None] = mapped_column(String(32))


class Evaluation(Base):
    """What a run's `evaluate` task returned: the evidence for promoting its candidate."""

    __tablename__ = "run_evaluations"
    __table_args__ = (
        UniqueConstraint("dag_id", "run_id", name="uq_run_evaluations_dag_id_run_id"),
        Index("ix_run_evaluations_model_at", "model", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128))
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    metric: Mapped[str] = mapped_column(String(64))
    candidate: Mapped[float] = mapped_column(Float)
    production: Mapped[float | None] = mapped_column(Float)
    direction: Mapped[str] = mapped_column(String(16))  # maximize | minimize, from the registry
    promote: Mapped[bool] = mapped_column(Boolean)
    diagnostics_uri: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Candidate(Base):
    """A candidate variant a run's `deploy` task put on an endpoint at weight 0: where a rollout starts."""

    __tablename__ = "run_candidates"
    __table_args__ = (
        UniqueConstraint("dag_id", "run_id", name="uq_run_candidates_dag_id_run_id"),
        Index("ix_run_candidates_model_recorded_at", "model", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128))
    endpoint: Mapped[str] = mapped_column(String(128))
    stable_variant: Mapped[str] = mapped_column(String(128))
    candidate_variant: Mapped[str] = mapped_column(String(128))
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set by the rollout capability once a rollout has started from this candidate.
    consumed: Mapped[bool] = mapped_column(Boolean, default=False)
    consumed_at: Mapped[datetime | None]
    rollout_started_at: Mapped[datetime | None]
    rollout_error: Mapped[str | None] = mapped_column(Text)
    # Claimed by the worker handing it to the rollout, so two workers do not both do it; expires after a crash.
    rollout_claimed_at: Mapped[datetime | None]


class WatcherState(Base):
    """The run watcher's cursor (Airflow's clock at the last complete pass) and its back-off while Airflow is down."""

    __tablename__ = "run_watcher_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[datetime | None]
    down_since: Mapped[datetime | None]
    down_reason: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_pass_at: Mapped[datetime | None]


def find_run(session: Session, dag_id: str, run_id: str) -> RunRecord | None:
    return session.scalars(select(RunRecord).where(RunRecord.dag_id == dag_id, RunRecord.run_id == run_id)).first()


def recent_runs(session: Session, model: str, limit: int = 5) -> list[RunRecord]:
    q = (
        select(RunRecord)
        .where(RunRecord.model == model)
        .order_by(RunRecord.queued_at.desc(), RunRecord.id.desc())
        .limit(limit)
    )
    return list(session.scalars(q))


def evaluations(session: Session, model: str, limit: int = 30) -> list[Evaluation]:
    """The model's latest evaluations, newest first (for charts and the rollout's evidence)."""
    q = select(Evaluation).where(Evaluation.model == model).order_by(Evaluation.at.desc(), Evaluation.id.desc())
    return list(session.scalars(q.limit(limit)))


def evaluation_for_run(session: Session, dag_id: str, run_id: str) -> Evaluation | None:
    return session.scalars(select(Evaluation).where(Evaluation.dag_id == dag_id, Evaluation.run_id == run_id)).first()


def pending_candidate(session: Session, model: str) -> Candidate | None:
    """The newest candidate of the model that no rollout has started from yet."""
    q = (
        select(Candidate)
        .where(Candidate.model == model, Candidate.consumed.is_(False))
        .order_by(Candidate.recorded_at.desc(), Candidate.id.desc())
    )
    return session.scalars(q).first()


def mark_candidate_consumed(session: Session, candidate_id: int) -> bool:
    """For the rollout capability: True when this call consumed it (False: already consumed)."""
    result = session.execute(
        update(Candidate)
        .where(Candidate.id == candidate_id, Candidate.consumed.is_(False))
        .values(consumed=True, consumed_at=utcnow())
    )
    return result.rowcount == 1
