"""Right-sizing: the cheapest instance type that still carries a variant's load with 30% headroom, from the p95 of
its CPUUtilization and MemoryUtilization (namespace /aws/sagemaker/Endpoints) over the last 14 days. Pure:
datapoints and offers in, a recommendation out; never applied by itself.

CloudWatch can give percentiles itself, but moto (what the tests and the sandbox run on) cannot, so the
per-5-minute Maximum datapoints are read and their p95 taken here; the Average is read beside it and shown.
SageMaker's CPUUtilization is the sum over the instance's cores (up to 400% on 4 vCPUs) and the variant's
Maximum is that of its busiest instance; MemoryUtilization is a percent of the instance's memory.

A type fits when, at the same instance count:
    its vCPUs x 70% >= the vCPUs the p95 keeps busy (CPUUtilization / 100 on each instance)
    its memory x 70% >= the memory the p95 uses (MemoryUtilization x the current type's memory)
    it has at least the current type's GPUs
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bot.pricing.service import HOURS_PER_MONTH, Offer

HEADROOM = 0.30
WINDOW_DAYS = 14
PERIOD_SECONDS = 300
MIN_POINTS = 24 * 3600 // PERIOD_SECONDS  # a day of datapoints before anything is said


def p95(values: list[float]) -> float | None:
    """The 95th percentile by linear interpolation between closest ranks (numpy's default method)."""
    data = sorted(v for v in values if v is not None and math.isfinite(v))
    if not data:
        return None
    rank = 0.95 * (len(data) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


@dataclass(frozen=True)
class Load:
    """A variant's load over the window, from per-period datapoints (percent)."""

    cpu_p95: float | None
    memory_p95: float | None
    cpu_average: float | None
    memory_average: float | None
    points: int  # Maximum datapoints of the scarcer metric
    days: float  # the span they cover

    @classmethod
    def from_points(cls, cpu_max: list[float], mem_max: list[float], cpu_avg: list[float], mem_avg: list[float],
                    days: float) -> "Load":
        def mean(xs: list[float]) -> float | None:
            return sum(xs) / len(xs) if xs else None

        return cls(cpu_p95=p95(cpu_max), memory_p95=p95(mem_max), cpu_average=mean(cpu_avg),
                   memory_average=mean(mem_avg), points=min(len(cpu_max), len(mem_max)), days=days)


@dataclass(frozen=True)
class Recommendation:
    variant: str
    current: Offer
    count: int
    load: Load
    verdict: str  # cheaper | right | larger | unknown
    pick: Offer | None = None
    why: str = ""

    @property
    def vcpu_busy(self) -> float | None:
        """vCPUs the p95 keeps busy on one instance."""
        return None if self.load.cpu_p95 is None else self.load.cpu_p95 / 100.0

    @property
    def memory_used_gib(self) -> float | None:
        return None if self.load.memory_p95 is None else self.load.memory_p95 / 100.0 * self.current.memory_gib

    @property
    def saving_per_month(self) -> float:
        if self.pick is None:
            return 0.0
        return (self.current.usd_per_hour - self.pick.usd_per_hour) * self.count * HOURS_PER_MONTH


def fits(offer: Offer, vcpu_busy: float, memory_used_gib: float, gpus: int) -> bool:
    keep = 1.0 - HEADROOM
    return offer.vcpu * keep >= vcpu_busy and offer.memory_gib * keep >= memory_used_gib and offer.gpus >= gpus


def recommend(variant: str, current: Offer, count: int, load: Load, offers: list[Offer]) -> Recommendation:
    """The cheapest fitting type among `offers` (the region's price table), compared with `current`."""
    if load.cpu_p95 is None or load.memory_p95 is None or load.points < MIN_POINTS:
        return Recommendation(variant, current, count, load, "unknown",
                              why=f"only {load.points} five-minute datapoints of CPU and memory (a day is "
                                  f"{MIN_POINTS}): not enough to size on")
    busy, used = load.cpu_p95 / 100.0, load.memory_p95 / 100.0 * current.memory_gib
    fitting = sorted((o for o in offers if fits(o, busy, used, current.gpus)),
                     key=lambda o: (o.usd_per_hour, o.instance_type))
    if not fitting:
        return Recommendation(variant, current, count, load, "unknown",
                              why="no instance type in the price table carries this load with 30% headroom")
    best = fitting[0]
    if best.instance_type == current.instance_type or best.usd_per_hour >= current.usd_per_hour:
        if fits(current, busy, used, current.gpus):
            return Recommendation(variant, current, count, load, "right", pick=None,
                                  why="already the cheapest type that fits")
        return Recommendation(variant, current, count, load, "larger", pick=best,
                              why="it runs with less than 30% headroom")
    return Recommendation(variant, current, count, load, "cheaper", pick=best)
