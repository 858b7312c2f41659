"""What modelbot set on each variant's scalable target, what Application Auto Scaling had at the last look, and
what was already said about it (a drift, a failure), so each is said once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.base import Base, as_utc


class ScalingTarget(Base):
    """One variant of a model's endpoint that modelbot manages (or managed until now)."""

    __tablename__ = "scaling_targets"
    __table_args__ = (UniqueConstraint("model", "endpoint", "variant", name="uq_scaling_targets_variant"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    endpoint: Mapped[str] = mapped_column(String(128))
    region: Mapped[str] = mapped_column(String(32))
    variant: Mapped[str] = mapped_column(String(128))
    # bot.scaling.desired.Target.to_json(): what modelbot last applied; NULL: never applied (only observed).
    applied: Mapped[dict | None] = mapped_column(JSON)
    applied_at: Mapped[datetime | None]
    # {"min", "max", "scale_in_suspended", "policy_target"}: Application Auto Scaling at the last look.
    observed: Mapped[dict | None] = mapped_column(JSON)
    observed_at: Mapped[datetime | None]
    # The hand-made state last reported as drift (one drift is said once, however many passes it takes to mend).
    drift_said: Mapped[dict | None] = mapped_column(JSON)
    drifts: Mapped[int] = mapped_column(Integer, default=0)

    def when(self, column: str) -> datetime | None:
        return as_utc(getattr(self, column))


class ScalingModel(Base):
    """Per model: whether turning scaling on was said, and the Application Auto Scaling problem said last."""

    __tablename__ = "scaling_models"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    announced_at: Mapped[datetime | None]
    problem: Mapped[str | None] = mapped_column(Text)  # the last pass's failure, NULL when it went through
    problem_key: Mapped[str | None] = mapped_column(String(255))  # what was said: one message per kind of failure
    problems_said: Mapped[int] = mapped_column(Integer, default=0)
    checked_at: Mapped[datetime | None]
