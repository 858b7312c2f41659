"""Foundation tables: audit log, processed Slack deliveries, thread mapping, job leases; and the one clock.

Every process that takes a lease or a claim, or starts a rollout's step, reads the time from the database
(`database_now`), not from its own clock: two workers and the web process whose clocks disagree by minutes
still agree on when a lease lapses, a claim goes stale or a step began.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import JSON, Integer, String, Text, UniqueConstraint, or_, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.store.base import Base, utcnow


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128), index=True)
    outcome: Mapped[str] = mapped_column(String(32))  # ok | denied | failed | requested
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class SlackDelivery(Base):
    """Keys of Slack deliveries already handled: Slack retries events it thinks we missed."""

    __tablename__ = "slack_deliveries"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Thread(Base):
    """One Slack thread per run or rollout: where its lifecycle events go."""

    __tablename__ = "threads"
    __table_args__ = (UniqueConstraint("kind", "key", name="uq_threads_kind_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # run | rollout
    key: Mapped[str] = mapped_column(String(255))  # dag_id/run_id, rollout id
    model: Mapped[str] = mapped_column(String(128), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobLease(Base):
    """A lease per job so two workers never run the same job at once (portable: one UPDATE, no row locks)."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[datetime | None]


def insert_ignore(session: Session, table, values: dict, index_elements: list[str]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when this call inserted the row (first to claim it)."""
    dialect = session.get_bind().dialect.name
    builder = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        builder(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=index_elements)
        .returning(table.c[index_elements[0]])
    )
    # RETURNING rather than rowcount: psycopg reports no reliable rowcount for ON CONFLICT DO NOTHING.
    return session.execute(stmt).first() is not None


def database_now(session: Session) -> datetime:
    """The database server's current time (UTC, aware). PostgreSQL: clock_timestamp(), the time of the call
    rather than of the transaction's start; SQLite: its `now`, from the operating system's clock."""
    if session.get_bind().dialect.name == "postgresql":
        return session.execute(text("SELECT clock_timestamp()")).scalar_one().astimezone(timezone.utc)
    raw = session.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
    return datetime.fromisoformat(raw).replace(tzinfo=timezone.utc)


def claim_delivery(session: Session, key: str) -> bool:
    return insert_ignore(session, SlackDelivery.__table__, {"key": key, "received_at": utcnow()}, ["key"])


def acquire_lease(session: Session, name: str, holder: str, ttl: timedelta) -> bool:
    now = database_now(session)
    insert_ignore(session, JobLease.__table__, {"name": name, "holder": None, "expires_at": None}, ["name"])
    result = session.execute(
        update(JobLease)
        .where(JobLease.name == name)
        .where(or_(JobLease.holder.is_(None), JobLease.holder == holder, JobLease.expires_at < now))
        .values(holder=holder, expires_at=now + ttl)
    )
    return result.rowcount == 1


def renew_lease(session: Session, name: str, holder: str, ttl: timedelta) -> bool:
    """Extends a lease this holder still has (never re-takes one that was released or taken over)."""
    expires = database_now(session) + ttl
    return session.execute(update(JobLease).where(JobLease.name == name, JobLease.holder == holder)
                           .values(expires_at=expires)).rowcount == 1


def release_lease(session: Session, name: str, holder: str) -> None:
    session.execute(
        update(JobLease).where(JobLease.name == name, JobLease.holder == holder).values(holder=None, expires_at=None)
    )
