"""SageMaker hosting prices cached from the AWS Price List, and a record of every refresh."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.base import Base, utcnow


class InstancePrice(Base):
    """One instance type's on-demand hosting price in one region, as last fetched."""

    __tablename__ = "instance_prices"
    __table_args__ = (
        UniqueConstraint("region", "instance_type", name="uq_instance_prices_region_instance_type"),
        # The cheapest-fit query filters on these three; price order is cheap to sort on the few matches.
        Index("ix_instance_prices_fit", "region", "vcpu", "memory_gib"),
        Index("ix_instance_prices_region_price", "region", "usd_per_hour"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    region: Mapped[str] = mapped_column(String(32))
    instance_type: Mapped[str] = mapped_column(String(64))
    vcpu: Mapped[float] = mapped_column(Float)
    memory_gib: Mapped[float] = mapped_column(Float)
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    gpu_memory_gib: Mapped[float | None] = mapped_column(Float)
    usd_per_hour: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16))  # api | bulk
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class PriceRefresh(Base):
    """Each refresh attempt of a region, kept so replies can say how old prices are and jobs can back off."""

    __tablename__ = "price_refreshes"
    __table_args__ = (Index("ix_price_refreshes_region_fetched_at", "region", "fetched_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    region: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    rows: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set when the attempt failed; the stored prices for the region were then left as they were.
    error: Mapped[str | None] = mapped_column(Text)
