"""The endpoint snapshot: what each registered model's SageMaker endpoint looked like at the worker's last read.

One row per model, replaced on every read. A failed read keeps the last good data (and its time, `ok_at`) and
records the error beside it, so status can show both what was last known and that it could not be refreshed.
`endpoint_snapshot_passes` holds one row per pass kind ("worker"): its absence means the worker never ran.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.base import Base, as_utc

WORKER_PASS = "worker"


class EndpointSnapshot(Base):
    __tablename__ = "endpoint_snapshots"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    endpoint: Mapped[str | None] = mapped_column(String(128))
    region: Mapped[str] = mapped_column(String(32))
    status: Mapped[str | None] = mapped_column(String(32))  # EndpointStatus: InService, Updating, Failed, ...
    config_name: Mapped[str | None] = mapped_column(String(128))
    # [{"name", "weight", "desired_weight", "instance_type", "instance_count", "desired_instance_count",
    #   "statuses": [[Status, StatusMessage], ...]}], as DescribeEndpoint lists them
    variants: Mapped[list] = mapped_column(JSON, default=list)
    failure_reason: Mapped[str | None] = mapped_column(Text)  # SageMaker's FailureReason (endpoint or last update)
    read_at: Mapped[datetime]  # the last attempt, successful or not
    ok_at: Mapped[datetime | None]  # the last successful read: how old `status` and `variants` are
    error: Mapped[str | None] = mapped_column(Text)  # why the last attempt failed; NULL when it succeeded
    source: Mapped[str] = mapped_column(String(16))  # worker | live

    def when(self, column: str) -> datetime | None:
        return as_utc(getattr(self, column))


class SnapshotPass(Base):
    __tablename__ = "endpoint_snapshot_passes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    seconds: Mapped[float] = mapped_column(Float)
    models: Mapped[int] = mapped_column(Integer)
    calls: Mapped[int] = mapped_column(Integer)
    throttled: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer)
    interval_seconds: Mapped[float] = mapped_column(Float)
    passes: Mapped[int] = mapped_column(Integer)

    @property
    def period_seconds(self) -> float:
        """How often a model is read in practice: the worker's interval, or the pass itself when it is longer."""
        return max(self.interval_seconds, self.seconds)
