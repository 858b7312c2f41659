"""Rollouts: one row per gradual rollout, its evidence history, and the Slack messages it has posted.

Every change of a rollout row goes through `save()`: UPDATE ... WHERE id = ? AND version = ?. Two workers (or a
worker and a Slack command) that read the same version cannot both move the rollout on; the loser sees 0 rows
updated and reads again.

`pending` is the transition's intent: the AWS change and the messages it implies, written in the same UPDATE as
the new state, before anything is done outside. It is cleared as soon as SageMaker has what it wants, in the
transaction that queues the messages in the Slack outbox; a worker killed at any point finds it on the next
pass and completes it (each part is idempotent). So a non-empty `pending` means: a traffic change is owed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.rollouts.states import ACTIVE_STATES, FINAL_STATES  # noqa: F401 -- FINAL_STATES: for readers of the table
from bot.store.base import Base, as_utc, utcnow

# None must be stored as SQL NULL (not JSON null) so `pending IS NOT NULL` finds exactly the open intents.
NULLABLE_JSON = JSON(none_as_null=True)



class Rollout(Base):
    __tablename__ = "rollouts"
    __table_args__ = (Index("ix_rollouts_state", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    # The model's name while the rollout is not finished, NULL after: the unique constraint allows one
    # unfinished rollout per model (NULLs never collide, on SQLite and PostgreSQL alike).
    active_model: Mapped[str | None] = mapped_column(String(128), unique=True)
    # "<model>/<run_id>" for a rollout started by an Airflow deploy: the run watcher may call twice.
    run_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    source: Mapped[str] = mapped_column(String(16))  # airflow | slack
    started_by: Mapped[str | None] = mapped_column(String(32))
    endpoint: Mapped[str] = mapped_column(String(128))
    region: Mapped[str] = mapped_column(String(32))
    stable_variant: Mapped[str] = mapped_column(String(128))
    candidate_variant: Mapped[str] = mapped_column(String(128))
    # The traffic steps as they were when the rollout began: a models file edited mid-rollout cannot
    # make the current step index point somewhere else.
    steps: Mapped[list] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    step_index: Mapped[int] = mapped_column(Integer, default=0)
    # Counts are read from here on (the current split began); baking measures its time from here too.
    step_started_at: Mapped[datetime | None]
    # max_step_minutes is measured from here; a resume restarts it without throwing away the step's counts.
    timer_started_at: Mapped[datetime | None]
    resume_state: Mapped[str | None] = mapped_column(String(16))
    paused_reason: Mapped[str | None] = mapped_column(Text)
    # The endpoint config when the rollout began (both variants, the candidate at weight 0): what a later
    # rollback goes back to once the old variant has been removed from the endpoint.
    previous_config: Mapped[str | None] = mapped_column(String(128))
    final_config: Mapped[str | None] = mapped_column(String(128))
    # What the current state wants the endpoint's weights to be; executors converge on it.
    target_weights: Mapped[dict | None] = mapped_column(NULLABLE_JSON)
    thread_channel: Mapped[str | None] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    owns_parent: Mapped[bool] = mapped_column(default=False)  # started from Slack: the thread's parent is ours
    evidence_ts: Mapped[str | None] = mapped_column(String(32))  # this step's evidence message
    pause_ts: Mapped[str | None] = mapped_column(String(32))  # the message with Continue / Roll back
    last_evidence: Mapped[dict | None] = mapped_column(NULLABLE_JSON)
    pending: Mapped[dict | None] = mapped_column(NULLABLE_JSON)
    last_error: Mapped[str | None] = mapped_column(Text)
    # A deploy of the model that came while this rollout was in progress (0011_reliability): it starts when
    # this one has ended, against whatever then serves all the traffic (run_key, run_id, endpoint, stable,
    # candidate, channel, thread_ts). Never two rollouts' splits on one endpoint.
    next_deploy: Mapped[dict | None] = mapped_column(NULLABLE_JSON)
    # Who is carrying the intent out right now (0011_reliability), on the database's clock: two processes
    # that find the same intent (a command and the controller's next tick) never both send it to SageMaker.
    carry_holder: Mapped[str | None] = mapped_column(String(64))
    carry_until: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    ended_by: Mapped[str | None] = mapped_column(String(32))
    ended_reason: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def when(self, column: str) -> datetime | None:
        """A timestamp column as an aware UTC datetime (SQLite hands back naive ones)."""
        return as_utc(getattr(self, column))

    @property
    def percent(self) -> float:
        """The candidate's traffic share of the current step, in percent."""
        return float(self.steps[min(self.step_index, len(self.steps) - 1)])


class RolloutEvent(Base):
    """The evidence history: one row per judgement and per transition (charts read the counts from here)."""

    __tablename__ = "rollout_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(24))  # judgement | start | shift | bake | promoted | ...
    state: Mapped[str] = mapped_column(String(16))
    step_index: Mapped[int] = mapped_column(Integer)
    candidate_percent: Mapped[float] = mapped_column(Float)
    decision: Mapped[str | None] = mapped_column(String(16))
    stable_requests: Mapped[int | None] = mapped_column(Integer)
    stable_5xx: Mapped[int | None] = mapped_column(Integer)
    stable_4xx: Mapped[int | None] = mapped_column(Integer)
    candidate_requests: Mapped[int | None] = mapped_column(Integer)
    candidate_5xx: Mapped[int | None] = mapped_column(Integer)
    candidate_4xx: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class RolloutMessage(Base):
    """The Slack messages rollouts posted before the one outbox (slack_outbox, bot/slack/outbox.py) took them
    over. Nothing writes here any more; the table stays for the history it holds."""

    __tablename__ = "rollout_messages"
    __table_args__ = (UniqueConstraint("rollout_id", "key", name="uq_rollout_messages_rollout_id_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)


def save(session: Session, rollout: Rollout, **values: Any) -> bool:
    """Optimistic update: applies only if nobody changed the row since `rollout` was read."""
    values["version"] = rollout.version + 1
    values.setdefault("updated_at", utcnow())
    result = session.execute(
        update(Rollout).where(Rollout.id == rollout.id, Rollout.version == rollout.version).values(**values)
    )
    return result.rowcount == 1


def get(session: Session, rollout_id: int) -> Rollout | None:
    return session.get(Rollout, rollout_id, populate_existing=True)


def active_for(session: Session, model: str) -> Rollout | None:
    return session.scalars(select(Rollout).where(Rollout.active_model == model)).first()


def latest_for(session: Session, model: str) -> Rollout | None:
    return session.scalars(select(Rollout).where(Rollout.model == model).order_by(Rollout.id.desc()).limit(1)).first()


def by_run_key(session: Session, run_key: str) -> Rollout | None:
    return session.scalars(select(Rollout).where(Rollout.run_key == run_key)).first()


def waited_for(session: Session) -> list[Rollout]:
    """Ended rollouts a deploy waits for, whose last traffic change is done: that deploy starts now."""
    return list(session.scalars(select(Rollout).where(
        Rollout.active_model.is_(None), Rollout.next_deploy.is_not(None), Rollout.pending.is_(None))
        .order_by(Rollout.id)))


def needing_work(session: Session) -> list[Rollout]:
    """Unfinished rollouts and finished ones whose last transition is not fully carried out yet."""
    return list(
        session.scalars(
            select(Rollout)
            .where(or_(Rollout.state.in_(ACTIVE_STATES), Rollout.pending.is_not(None)))
            .order_by(Rollout.id)
        )
    )
