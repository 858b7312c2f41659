"""What a variant costs: instance type x instance count x the on-demand hourly price from modelbot's price table,
and a month of 730 hours (AWS's own convention: 8,760 hours a year / 12). Pure: prices and instances in,
dollars (or why they are unknown) out. A missing price is never $0: the cost is unknown, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.pricing.service import HOURS_PER_MONTH, Offer

ACTIVE_ROLLOUT = ("pending", "progressing", "paused")
ROLES = ("production", "candidate", "baking", "idle")


@dataclass(frozen=True)
class VariantCost:
    variant: str
    role: str  # production | candidate | baking | idle
    instance_type: str | None
    instance_count: int | None
    hourly_price: float | None = None  # one instance, on demand
    unknown: str | None = None  # why there is no price

    @property
    def usd_per_hour(self) -> float | None:
        if self.hourly_price is None or self.instance_count is None:
            return None
        return self.hourly_price * self.instance_count

    @property
    def usd_per_month(self) -> float | None:
        hourly = self.usd_per_hour
        return None if hourly is None else hourly * HOURS_PER_MONTH


@dataclass
class ModelCost:
    model: str
    region: str
    variants: list[VariantCost] = field(default_factory=list)

    @property
    def usd_per_month(self) -> float:
        """What is known; `unknown` lists what could not be priced."""
        return sum(v.usd_per_month or 0.0 for v in self.variants)

    @property
    def unknown(self) -> list[VariantCost]:
        return [v for v in self.variants if v.usd_per_month is None]

    def by_role(self, role: str) -> float:
        return sum(v.usd_per_month or 0.0 for v in self.variants if v.role == role)

    @property
    def instances(self) -> int:
        return sum(v.instance_count or 0 for v in self.variants)


def role_of(variant: str, serving: bool, rollout_state: str | None, stable: str | None, candidate: str | None) -> str:
    """Whose cost a variant is: production, the candidate of a rollout in progress, the old variant a baking
    rollout keeps for a rollback, or idle (no traffic, no rollout: a rolled-back candidate left on the endpoint)."""
    if rollout_state in ACTIVE_ROLLOUT and variant in (stable, candidate) and stable != candidate:
        return "candidate" if variant == candidate else "production"
    if rollout_state == "baking" and variant in (stable, candidate) and stable != candidate:
        return "baking" if variant == stable else "production"
    return "production" if serving else "idle"


def price_variant(variant: str, role: str, instance_type: str | None, count: int | None, region: str,
                  offers: dict[str, Offer], region_has_prices: bool) -> VariantCost:
    """One variant's cost from the region's stored offers (instance type -> offer)."""
    if count is None:
        return VariantCost(variant, role, instance_type, None, unknown="its instance count is not known (serverless, "
                                                                       "or SageMaker did not report it)")
    if not instance_type:
        return VariantCost(variant, role, None, count, unknown="its instance type is not known (serverless, or the "
                                                               "endpoint config could not be read)")
    if not region_has_prices:
        return VariantCost(variant, role, instance_type, count,
                           unknown=f"no SageMaker prices are stored for {region} yet "
                                   f"(`modelbot prices refresh --region {region}`)")
    offer = offers.get(instance_type)
    if offer is None:
        return VariantCost(variant, role, instance_type, count,
                           unknown=f"`{instance_type}` has no on-demand hosting price in {region}'s price list")
    return VariantCost(variant, role, instance_type, count, hourly_price=offer.usd_per_hour)


def instance_hours(started, ended, since, until) -> float:
    """Hours of [started, ended) inside [since, until)."""
    start, end = max(started, since), min(ended, until)
    return max(0.0, (end - start).total_seconds() / 3600.0)
