"""The instance history `/model cost` counts instance hours from: one row per stretch of time a variant ran a
given number of instances of a given type, written as the worker's endpoint snapshot sees them change."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.base import Base, as_utc


class InstanceSegment(Base):
    """`instance_count` instances of `instance_type` on `variant` from `started_at` until `ended_at` (NULL: still
    so at `last_seen_at`, the last snapshot that saw it)."""

    __tablename__ = "instance_segments"
    __table_args__ = (Index("ix_instance_segments_model_started_at", "model", "started_at"),
                      Index("ix_instance_segments_open", "model", "ended_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128))
    endpoint: Mapped[str] = mapped_column(String(128))
    region: Mapped[str] = mapped_column(String(32))
    variant: Mapped[str] = mapped_column(String(128))
    instance_type: Mapped[str | None] = mapped_column(String(64))  # NULL: serverless, or not known yet
    instance_count: Mapped[int] = mapped_column(Integer)
    serving: Mapped[bool] = mapped_column(Boolean, default=True)  # it had traffic (a weight above 0)
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]

    def when(self, column: str) -> datetime | None:
        return as_utc(getattr(self, column))
