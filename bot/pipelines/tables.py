"""model_packages: the Model Registry package a run's deploy carried, and what modelbot told the registry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.base import Base, utcnow


class ModelPackage(Base):
    __tablename__ = "model_packages"
    __table_args__ = (
        UniqueConstraint("dag_id", "run_id", name="uq_model_packages_dag_id_run_id"),
        Index("ix_model_packages_model_id", "model", "id"),
        Index("ix_model_packages_synced_at", "synced_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128))
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    endpoint: Mapped[str] = mapped_column(String(128))
    variant: Mapped[str] = mapped_column(String(128))  # the candidate variant serving this package
    model_package_arn: Mapped[str] = mapped_column(String(2048))
    version: Mapped[int | None] = mapped_column(Integer)
    # The deploy created the endpoint with this package alone (a first model): it serves without a rollout.
    created_endpoint: Mapped[bool] = mapped_column(Boolean, default=False)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    # What happened to the candidate: Approved (a rollout promoted it) | Rejected (one rolled it back) |
    # Unchanged (its rollouts were aborted); set when a rollout of the candidate ends, changed when a later one
    # (or a rollback of the promotion) decides otherwise. rollout_id: the rollout that decided.
    rollout_id: Mapped[int | None] = mapped_column(Integer)
    approval_status: Mapped[str | None] = mapped_column(String(32))
    approval_description: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None]  # when modelbot last looked at the candidate's rollouts and decided
    # When the Model Registry said so too; NULL with a decision: the next pass tries again.
    synced_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
