"""SageMaker hosting prices: refreshing the cached table, and answering "what is the cheapest instance that fits".

Specs and prices come from the AWS price list (bot/price_list.py) and are cached per region in the database,
so a /model pricing reply is one indexed query. Every reply says how old the prices are.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from bot.integrations import price_list
from bot.errors import ExternalError
from bot.integrations.price_list import Fetched, PriceList, PriceListError, Progress
from bot.slack.formatting import age
from bot.store import Store
from bot.store.base import as_utc, utcnow
from bot.pricing.tables import InstancePrice, PriceRefresh

log = logging.getLogger(__name__)

HOURS_PER_MONTH = 730
# Older than this, a reply carries a warning; the refresh job keeps prices far younger (REFRESH_AFTER).
STALE_AFTER = timedelta(days=7)
REFRESH_AFTER = timedelta(hours=24)
# MODELBOT_PRICE_REFRESH_HOURS overrides REFRESH_AFTER for the job; 0 turns the job off.
REFRESH_HOURS_ENV = "MODELBOT_PRICE_REFRESH_HOURS"
# After a failed attempt the job waits this long before trying the region again (the bulk file is large).
RETRY_AFTER = timedelta(hours=1)
INSERT_BATCH = 1000
SOURCE_NAMES = {"api": "the AWS Price List API", "bulk": "the AWS bulk price list file"}


class PricingError(ExternalError):
    """Prices cannot be given; the message says why and what to do."""


class NoPrices(PricingError):
    def __init__(self, region: str):
        self.region = region
        super().__init__(
            f"No SageMaker prices are stored for {region} yet. "
            f"Run `modelbot prices refresh --region {region}` (the worker also refreshes the regions of "
            f"registered models once a day)."
        )


@dataclass(frozen=True)
class Need:
    vcpu: float
    memory_gib: float
    gpus: int = 0

    def describe(self) -> str:
        text = f"{_num(self.vcpu)} vCPU, {_num(self.memory_gib)} GiB"
        if self.gpus:
            text += f", {self.gpus} GPU" + ("s" if self.gpus != 1 else "")
        return text


@dataclass(frozen=True)
class Offer:
    instance_type: str
    vcpu: float
    memory_gib: float
    gpus: int
    gpu_memory_gib: float | None
    usd_per_hour: float

    @property
    def usd_per_month(self) -> float:
        return self.usd_per_hour * HOURS_PER_MONTH

    def specs(self) -> str:
        text = f"{_num(self.vcpu)} vCPU, {_num(self.memory_gib)} GiB"
        if self.gpus:
            gpu_mem = f" ({_num(self.gpu_memory_gib)} GiB GPU memory)" if self.gpu_memory_gib else ""
            text += f", {self.gpus} GPU" + ("s" if self.gpus != 1 else "") + gpu_mem
        return text

    def fits(self, need: Need) -> bool:
        return self.vcpu >= need.vcpu and self.memory_gib >= need.memory_gib and self.gpus >= need.gpus


@dataclass
class Quote:
    region: str
    need: Need
    offers: list[Offer]  # cheapest first; empty when nothing fits
    fetched_at: datetime
    source: str
    largest: Offer | None = None  # set when nothing fits

    def age(self, now: datetime | None = None) -> timedelta:
        return (now or utcnow()) - self.fetched_at

    def stale(self, now: datetime | None = None) -> bool:
        return self.age(now) > STALE_AFTER

    def freshness(self, now: datetime | None = None) -> str:
        return f"prices fetched {age(self.age(now))} ago from {SOURCE_NAMES.get(self.source, self.source)}"


@dataclass
class RefreshResult:
    region: str
    source: str
    rows: int
    skipped: int
    fetched_at: datetime
    skipped_reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        text = f"{self.region}: {self.rows} instance prices from {SOURCE_NAMES.get(self.source, self.source)}"
        if self.skipped:
            reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped_reasons.items()))
            text += f", {self.skipped} records skipped ({reasons})"
        return text


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:g}" if value < 1e6 else f"{value:,.0f}"


# --- regions ---------------------------------------------------------------------------------------------------


@functools.cache
def known_regions() -> tuple[str, ...]:
    """Region codes SageMaker is offered in, from botocore's bundled endpoint data (no network)."""
    import boto3

    session = boto3.session.Session()
    found: set[str] = set()
    for partition in ("aws", "aws-cn", "aws-us-gov"):
        try:
            found.update(session.get_available_regions("sagemaker", partition_name=partition))
        except Exception:  # an older botocore without a partition: fewer regions known, nothing worse
            continue
    found.update(price_list.gpu_table_regions())
    return tuple(sorted(found))


def is_known_region(region: str, store: Store | None = None) -> bool:
    if region in known_regions():
        return True
    if store is None:
        return False
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(InstancePrice).where(InstancePrice.region == region)) > 0


def region_examples(n: int = 6) -> str:
    preferred = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1", "ap-northeast-1"]
    known = set(known_regions())
    picks = [r for r in preferred if r in known] or list(known_regions())
    return ", ".join(f"`{r}`" for r in picks[:n])


# --- refresh ---------------------------------------------------------------------------------------------------


def choose_source(source: str, prices: PriceList) -> str:
    if source not in ("auto", "api", "bulk"):
        raise ValueError(f"source must be auto, api or bulk, not {source!r}")
    if source != "auto":
        return source
    return "api" if prices.has_credentials() else "bulk"


def fetch(prices: PriceList, region: str, source: str, *, progress: Progress | None = None) -> Fetched:
    if source == "api":
        fetched = prices.from_api(region, progress=progress)
        if not fetched.records:
            raise PriceListError(
                f"The AWS Price List API returned no SageMaker hosting prices for {region!r} "
                f"({fetched.skipped_total} records skipped). Is it a region code such as us-east-1? "
                f"Prices for {region} were not refreshed."
            )
        return fetched
    fetched = prices.from_bulk(region, progress=progress)
    if not fetched.records:
        raise PriceListError(
            f"The AWS bulk price list file for {region} held no usable SageMaker hosting prices "
            f"({fetched.skipped_total} records skipped); prices for {region} were not refreshed."
        )
    return fetched


def refresh_region(store: Store, prices: PriceList, region: str, source: str = "auto", *,
                   progress: Progress | None = None) -> RefreshResult:
    """Fetch a region's prices and replace its stored rows in one transaction; a failure keeps the old rows
    and is recorded, then raised (PriceListError)."""
    chosen = choose_source(source, prices)
    try:
        try:
            fetched = fetch(prices, region, chosen, progress=progress)
        except PriceListError as exc:
            # "auto" means whichever source works: credentials without pricing:GetProducts rights happen.
            if source != "auto" or chosen != "api" or isinstance(exc, price_list.UnknownRegion):
                raise
            log.warning("%s Trying the bulk price list file instead.", exc)
            chosen = "bulk"
            try:
                fetched = fetch(prices, region, chosen, progress=progress)
            except PriceListError as bulk_exc:
                raise PriceListError(f"{exc} The bulk file failed too: {bulk_exc}") from None
    except PriceListError as exc:
        _record_failure(store, region, chosen, str(exc))
        raise
    return store_prices(store, fetched)


def store_prices(store: Store, fetched: Fetched, fetched_at: datetime | None = None) -> RefreshResult:
    fetched_at = fetched_at or utcnow()
    rows = [
        {
            "region": r.region,
            "instance_type": r.instance_type,
            "vcpu": r.vcpu,
            "memory_gib": r.memory_gib,
            "gpus": r.gpus,
            "gpu_memory_gib": r.gpu_memory_gib,
            "usd_per_hour": r.usd_per_hour,
            "source": fetched.source,
            "fetched_at": fetched_at,
        }
        for r in fetched.records
    ]
    # Delete and insert in one transaction: a reader sees the old prices or the new ones, never a mix.
    with store.session() as s:
        s.execute(delete(InstancePrice).where(InstancePrice.region == fetched.region))
        for start in range(0, len(rows), INSERT_BATCH):
            s.execute(insert(InstancePrice), rows[start:start + INSERT_BATCH])
        s.add(PriceRefresh(region=fetched.region, source=fetched.source, rows=len(rows),
                           skipped=fetched.skipped_total, fetched_at=fetched_at))
    return RefreshResult(region=fetched.region, source=fetched.source, rows=len(rows),
                         skipped=fetched.skipped_total, fetched_at=fetched_at,
                         skipped_reasons=dict(fetched.skipped))


def _record_failure(store: Store, region: str, source: str, error: str) -> None:
    try:
        with store.session() as s:
            s.add(PriceRefresh(region=region, source=source, rows=0, skipped=0, fetched_at=utcnow(), error=error[:2000]))
    except Exception:  # the refresh error is what matters to the caller; this is only for back-off
        log.exception("could not record the failed price refresh of %s", region)


def latest_refresh(session: Session, region: str, *, successful: bool = True) -> PriceRefresh | None:
    stmt = select(PriceRefresh).where(PriceRefresh.region == region)
    if successful:
        stmt = stmt.where(PriceRefresh.error.is_(None))
    return session.scalars(stmt.order_by(PriceRefresh.fetched_at.desc(), PriceRefresh.id.desc()).limit(1)).first()


def prices_as_of(session: Session, region: str) -> tuple[datetime, str] | None:
    """When the stored prices of a region were fetched, and from which source; None when there are none."""
    row = session.execute(
        select(func.min(InstancePrice.fetched_at), func.min(InstancePrice.source), func.count())
        .where(InstancePrice.region == region)
    ).one()
    if not row[2]:
        return None
    return as_utc(row[0]), row[1]


def refresh_after() -> timedelta | None:
    """How old prices may get before the job refreshes them; None when the job is turned off."""
    raw = os.environ.get(REFRESH_HOURS_ENV, "").strip()
    if not raw:
        return REFRESH_AFTER
    try:
        hours = float(raw)
    except ValueError:
        log.warning("%s=%r is not a number of hours; using %s", REFRESH_HOURS_ENV, raw, REFRESH_AFTER)
        return REFRESH_AFTER
    return timedelta(hours=hours) if hours > 0 else None


def region_states(store: Store, regions: Iterable[str], now: datetime | None = None,
                  max_age: timedelta = REFRESH_AFTER) -> dict[str, tuple[str, str]]:
    """region -> (state, why): "due" (missing or older than max_age), "fresh", or "waiting" (its last attempt
    failed less than RETRY_AFTER ago)."""
    now = now or utcnow()
    states: dict[str, tuple[str, str]] = {}
    with store.session() as s:
        for region in sorted(set(regions)):
            as_of = prices_as_of(s, region)
            why = "no prices stored" if as_of is None else f"prices {age(now - as_of[0])} old"
            if as_of and now - as_of[0] < max_age:
                states[region] = ("fresh", why)
                continue
            last_try = latest_refresh(s, region, successful=False)
            if last_try and last_try.error and now - as_utc(last_try.fetched_at) < RETRY_AFTER:
                states[region] = ("waiting", f"{why}; last attempt failed {age(now - as_utc(last_try.fetched_at))} ago")
                continue
            states[region] = ("due", why)
    return states


def regions_due(store: Store, regions: Iterable[str], now: datetime | None = None) -> dict[str, str]:
    """region -> why it needs a refresh now, leaving out regions that failed within RETRY_AFTER."""
    return {r: why for r, (state, why) in region_states(store, regions, now).items() if state == "due"}


# --- queries ---------------------------------------------------------------------------------------------------


def _offer(row: InstancePrice) -> Offer:
    return Offer(
        instance_type=row.instance_type,
        vcpu=row.vcpu,
        memory_gib=row.memory_gib,
        gpus=row.gpus,
        gpu_memory_gib=row.gpu_memory_gib,
        usd_per_hour=row.usd_per_hour,
    )


def cheapest_fits(session: Session, region: str, need: Need, limit: int = 5) -> list[Offer]:
    stmt = (
        select(InstancePrice)
        .where(
            InstancePrice.region == region,
            InstancePrice.vcpu >= need.vcpu,
            InstancePrice.memory_gib >= need.memory_gib,
            InstancePrice.gpus >= need.gpus,
        )
        .order_by(InstancePrice.usd_per_hour, InstancePrice.instance_type)
        .limit(limit)
    )
    return [_offer(r) for r in session.scalars(stmt)]


def largest_offer(session: Session, region: str) -> Offer | None:
    stmt = (
        select(InstancePrice)
        .where(InstancePrice.region == region)
        .order_by(InstancePrice.memory_gib.desc(), InstancePrice.vcpu.desc(), InstancePrice.gpus.desc(),
                  InstancePrice.usd_per_hour)
        .limit(1)
    )
    row = session.scalars(stmt).first()
    return _offer(row) if row else None


def offer_for(session: Session, region: str, instance_type: str) -> Offer | None:
    row = session.scalars(
        select(InstancePrice).where(InstancePrice.region == region, InstancePrice.instance_type == instance_type)
    ).first()
    return _offer(row) if row else None


def all_offers(session: Session, region: str) -> list[Offer]:
    stmt = select(InstancePrice).where(InstancePrice.region == region).order_by(InstancePrice.usd_per_hour)
    return [_offer(r) for r in session.scalars(stmt)]


def quote(store: Store, region: str, need: Need, limit: int = 5) -> Quote:
    """The cheapest instances that fit, with the age of the prices; NoPrices when the region has none."""
    with store.session() as s:
        as_of = prices_as_of(s, region)
        if as_of is None:
            raise NoPrices(region)
        offers = cheapest_fits(s, region, need, limit)
        largest = None if offers else largest_offer(s, region)
    return Quote(region=region, need=need, offers=offers, fetched_at=as_of[0], source=as_of[1], largest=largest)
