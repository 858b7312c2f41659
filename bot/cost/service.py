"""What models cost: now (instances x on-demand price, a 730-hour month), over the last N days (instance hours from
the instance history), and what a variant would cost on the cheapest type that carries its load (right-sizing).

Everything but right-sizing is read from the store: the instance history the worker's snapshot keeps
(bot/cost/history.py), the rollouts (whose cost a variant is), and modelbot's price table (bot/pricing).
Right-sizing reads CloudWatch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from bot.cost import history
from bot.cost.costs import ModelCost, VariantCost, instance_hours, price_variant, role_of
from bot.cost.rightsizing import PERIOD_SECONDS, WINDOW_DAYS, Load, Recommendation, recommend
from bot.cost.tables import InstanceSegment
from bot.errors import ExternalError
from bot.pricing.service import Offer, all_offers, prices_as_of
from bot.pricing.tables import InstancePrice
from bot.registry import Model
from bot.rollouts.tables import Rollout
from bot.store.base import as_utc, utcnow

DEFAULT_DAYS = 30
MAX_DAYS = 365



@dataclass(frozen=True)
class RolloutRole:
    state: str
    stable: str
    candidate: str


# ---------------------------------------------------------------------------------------------------------
# Prices


@dataclass
class Prices:
    """The offers of the instance types asked about, per region, and the regions that have any price at all."""

    offers: dict[str, dict[str, Offer]] = field(default_factory=dict)
    regions: set[str] = field(default_factory=set)

    def cost(self, variant: str, role: str, instance_type: str | None, count: int | None, region: str) -> VariantCost:
        return price_variant(variant, role, instance_type, count, region, self.offers.get(region, {}),
                             region in self.regions)


def prices_for(session, wanted: set[tuple[str, str | None]]) -> Prices:
    """Two queries, whatever the number of models: which regions have prices, and the offers asked for."""
    out = Prices()
    regions = {r for r, _ in wanted}
    types = {t for _, t in wanted if t}
    if not regions:
        return out
    out.regions = set(session.scalars(select(InstancePrice.region).where(InstancePrice.region.in_(regions)).distinct()))
    if types:
        for row in session.scalars(select(InstancePrice).where(InstancePrice.region.in_(regions),
                                                               InstancePrice.instance_type.in_(types))):
            out.offers.setdefault(row.region, {})[row.instance_type] = Offer(
                instance_type=row.instance_type, vcpu=row.vcpu, memory_gib=row.memory_gib, gpus=row.gpus,
                gpu_memory_gib=row.gpu_memory_gib, usd_per_hour=row.usd_per_hour)
    return out


def _count(v: dict) -> int | None:
    count = v.get("instance_count")
    return v.get("desired_instance_count") if count is None else count


def costs_of(session, endpoints: dict[str, tuple[str, list[dict]]],
             rollouts: dict[str, RolloutRole] | None = None, prices: Prices | None = None) -> dict[str, ModelCost]:
    """Model -> its cost now, from variants as the endpoint snapshot stores them ({model: (region, variants)})."""
    rollouts = rollouts or {}
    if prices is None:
        prices = prices_for(session, {(region, v.get("instance_type")) for region, vs in endpoints.values() for v in vs})
    out = {}
    for model, (region, variants) in endpoints.items():
        r = rollouts.get(model)
        cost = ModelCost(model=model, region=region)
        for v in variants:
            role = role_of(v["name"], float(v.get("weight") or 0) > 0, r.state if r else None,
                           r.stable if r else None, r.candidate if r else None)
            cost.variants.append(prices.cost(v["name"], role, v.get("instance_type"), _count(v), region))
        out[model] = cost
    return out


def latest_rollouts(session, names: list[str]) -> dict[str, RolloutRole]:
    if not names:
        return {}
    latest = select(func.max(Rollout.id)).where(Rollout.model.in_(names)).group_by(Rollout.model)
    return {r.model: RolloutRole(r.state, r.stable_variant, r.candidate_variant)
            for r in session.scalars(select(Rollout).where(Rollout.id.in_(latest)))}


# ---------------------------------------------------------------------------------------------------------
# /model cost: every model


@dataclass
class Overview:
    models: list[ModelCost]  # largest first; models whose whole cost is unknown last
    days: int
    spent: dict[str, float] = field(default_factory=dict)  # over the last `days`, priced at today's prices
    not_seen: list[str] = field(default_factory=list)  # registered, with an endpoint, never in the history
    prices_as_of: dict[str, datetime] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(m.usd_per_month for m in self.models)

    def part(self, *roles: str) -> float:
        return sum(m.by_role(role) for m in self.models for role in roles)


def overview(services, days: int = DEFAULT_DAYS, now: datetime | None = None) -> Overview:
    """Every registered model's cost now (from the open segments of the instance history), and its spend over
    the last `days`."""
    now = now or utcnow()
    registry = services.registry
    names = [n for n in registry.names() if registry.get(n).endpoint]
    since = now - timedelta(days=days)
    with services.store.session() as s:
        rows = list(s.scalars(select(InstanceSegment).where(
            InstanceSegment.model.in_(names), (InstanceSegment.ended_at.is_(None)) | (InstanceSegment.ended_at > since))))
        rollouts = latest_rollouts(s, names)
        current: dict[str, tuple[str, list[dict]]] = {}
        for row in rows:
            if row.ended_at is None:
                current.setdefault(row.model, (row.region, []))[1].append(
                    {"name": row.variant, "weight": 1.0 if row.serving else 0.0, "instance_type": row.instance_type,
                     "instance_count": row.instance_count})
        prices = prices_for(s, {(row.region, row.instance_type) for row in rows})
        costs = costs_of(s, current, rollouts, prices)
        as_of = {}
        for region in {c.region for c in costs.values()}:
            found = prices_as_of(s, region)
            if found:
                as_of[region] = found[0]
    spent: dict[str, float] = {}
    for row in rows:
        offer = prices.offers.get(row.region, {}).get(row.instance_type or "")
        if offer is None:
            continue
        hours = instance_hours(as_utc(row.started_at), as_utc(row.ended_at) or now, since, now)
        spent[row.model] = spent.get(row.model, 0.0) + hours * row.instance_count * offer.usd_per_hour
    ordered = sorted(costs.values(), key=lambda c: (not any(v.usd_per_month is not None for v in c.variants),
                                                   -c.usd_per_month, c.model))
    return Overview(models=ordered, days=days, spent=spent, not_seen=[n for n in names if n not in costs],
                    prices_as_of=as_of)


# ---------------------------------------------------------------------------------------------------------
# /model cost MODEL


@dataclass
class VariantSpend:
    variant: str
    instance_type: str | None
    hours: float  # instance hours in the period
    usd: float | None  # None: no price for its type (see `unknown`)
    unknown: str | None = None


@dataclass
class Detail:
    model: Model
    days: int
    since: datetime
    until: datetime
    now: ModelCost | None
    spend: list[VariantSpend] = field(default_factory=list)
    first_seen: datetime | None = None
    segments: list[dict] = field(default_factory=list)  # for the chart: variant, instance_type, count, start, end
    recommendations: list[Recommendation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    prices_as_of: datetime | None = None

    @property
    def spent(self) -> float:
        return sum(v.usd or 0.0 for v in self.spend)

    @property
    def hours(self) -> float:
        return sum(v.hours for v in self.spend)


def detail(services, model: Model, days: int = DEFAULT_DAYS, now: datetime | None = None) -> Detail:
    """One model: its cost now, and its instance hours and spend over the last `days` (from the store)."""
    now = now or utcnow()
    since = now - timedelta(days=days)
    out = Detail(model=model, days=days, since=since, until=now, now=None)
    with services.store.session() as s:
        rows = history.segments(s, model.name, since)
        out.first_seen = as_utc(history.first_seen(s, model.name))
        rollouts = latest_rollouts(s, [model.name])
        current = {model.name: (model.region, [{"name": r.variant, "weight": 1.0 if r.serving else 0.0,
                                                "instance_type": r.instance_type, "instance_count": r.instance_count}
                                               for r in rows if r.ended_at is None])}
        out.now = costs_of(s, current, rollouts).get(model.name)
        prices = prices_for(s, {(r.region, r.instance_type) for r in rows} | {(model.region, None)})
        found = prices_as_of(s, model.region)
        out.prices_as_of = found[0] if found else None
    by_variant: dict[str, VariantSpend] = {}
    for r in rows:
        start, end = as_utc(r.started_at), as_utc(r.ended_at) or now
        hours = instance_hours(start, end, since, now) * r.instance_count
        priced = prices.cost(r.variant, "", r.instance_type, r.instance_count, r.region)
        spend = by_variant.setdefault(r.variant, VariantSpend(r.variant, r.instance_type, 0.0, 0.0))
        spend.hours += hours
        spend.instance_type = r.instance_type or spend.instance_type
        if priced.hourly_price is None:
            spend.usd, spend.unknown = None, priced.unknown
        elif spend.usd is not None:
            spend.usd += hours * priced.hourly_price
        out.segments.append({"variant": r.variant, "instance_type": r.instance_type, "count": r.instance_count,
                             "start": max(start, since), "end": end})
    out.spend = sorted(by_variant.values(), key=lambda v: -v.hours)
    return out


def rightsize(services, detail_: Detail, now: datetime | None = None) -> None:
    """Adds a recommendation for each priced variant of the model now, from CloudWatch's last 14 days; a variant
    that cannot be sized gets a note saying why."""
    now = now or utcnow()
    if detail_.now is None:
        return
    model = detail_.model
    start = now - timedelta(days=WINDOW_DAYS)
    with services.store.session() as s:
        offers = all_offers(s, model.region)
    by_type = {o.instance_type: o for o in offers}
    for v in detail_.now.variants:
        current = by_type.get(v.instance_type or "")
        if current is None or not v.instance_count:
            detail_.notes.append(f"`{v.variant}` not sized: {v.unknown or 'no instance count'}")
            continue
        try:
            series = services.cloudwatch.fetch_utilization(model.endpoint, v.variant, model.region, start=start,
                                                           end=now, period=PERIOD_SECONDS)
        except ExternalError as exc:
            detail_.notes.append(f"`{v.variant}` not sized: {exc}")
            continue
        load = Load.from_points(series[("CPUUtilization", "Maximum")], series[("MemoryUtilization", "Maximum")],
                                series[("CPUUtilization", "Average")], series[("MemoryUtilization", "Average")],
                                days=WINDOW_DAYS)
        detail_.recommendations.append(recommend(v.variant, current, v.instance_count, load, offers))
