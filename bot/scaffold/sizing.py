"""The serving instance a new model starts on: the cheapest SageMaker hosting instance that fits its needs, from
the prices modelbot has cached (bot/pricing/), or, when none are cached, the smallest general-purpose one.

Reading prices never creates or migrates a database: `modelbot new` on a laptop without modelbot's database
simply has no prices, and says so.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.config import ConfigError, load_settings
from bot.pricing import service as pricing
from bot.pricing.service import Need, Offer
from bot.slack import formatting
from bot.store import Store
from bot.store.base import utcnow

# SageMaker's general-purpose family, offered in every region (vCPU, GiB): the choice when no prices are cached.
GENERAL_PURPOSE = (("ml.m5.large", 2, 8), ("ml.m5.xlarge", 4, 16), ("ml.m5.2xlarge", 8, 32),
                   ("ml.m5.4xlarge", 16, 64), ("ml.m5.12xlarge", 48, 192), ("ml.m5.24xlarge", 96, 384))


@dataclass(frozen=True)
class Prices:
    """A region's cached hosting prices (cheapest first) and where they came from; offers empty when none."""

    region: str
    offers: tuple[Offer, ...] = ()
    freshness: str = ""
    missing: str = ""  # why there are none

    def find(self, instance_type: str) -> Offer | None:
        return next((o for o in self.offers if o.instance_type == instance_type), None)


@dataclass(frozen=True)
class Choice:
    instance_type: str
    priced: bool
    why: str  # one sentence, said in the question's help and in `modelbot new`'s summary


def number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _database_url() -> tuple[str | None, str]:
    try:
        url = load_settings().sqlalchemy_url
    except ConfigError as exc:
        return None, f"modelbot's settings are invalid ({exc})"
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or not Path(database).is_file():
            return None, f"modelbot's database ({url}) does not exist here"
    return url, ""


@functools.lru_cache(maxsize=32)
def _prices(url: str | None, why_none: str, region: str) -> Prices:
    if url is None:
        return Prices(region, missing=why_none)
    store = Store(url)
    try:
        with store.session() as s:
            as_of = pricing.prices_as_of(s, region)
            if as_of is None:
                return Prices(region, missing=f"no SageMaker prices are cached in modelbot's database for {region}")
            offers = tuple(pricing.all_offers(s, region))
        quote = pricing.Quote(region=region, need=Need(0, 0), offers=[], fetched_at=as_of[0], source=as_of[1])
        return Prices(region, offers=offers, freshness=quote.freshness(utcnow()))
    except SQLAlchemyError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Prices(region, missing=f"modelbot's database could not be read ({first})")
    finally:
        store.dispose()


def prices(region: str) -> Prices:
    return _prices(*_database_url(), region)


def _need_text(need: Need) -> str:
    return f"at least {need.describe()}"


def choose(vcpu: Any, memory_gib: Any, region: str) -> Choice:
    need = Need(vcpu=number(vcpu) or 0, memory_gib=number(memory_gib) or 0)
    cached = prices(region)
    if cached.offers:
        fitting = [o for o in cached.offers if o.fits(need)]
        if fitting:
            best = min(fitting, key=lambda o: (o.usd_per_hour, o.instance_type))
            return Choice(best.instance_type, True,
                          f"{best.instance_type} is the cheapest SageMaker hosting instance with {_need_text(need)} "
                          f"in {region}: {formatting.money(best.usd_per_hour)}/h, about "
                          f"{formatting.money(best.usd_per_month)}/month (modelbot's cached prices: "
                          f"{cached.freshness})")
        largest = max(cached.offers, key=lambda o: (o.memory_gib, o.vcpu))
        return Choice(largest.instance_type, True,
                      f"no SageMaker hosting instance in {region} has {_need_text(need)}; the largest is "
                      f"{largest.instance_type} ({largest.specs()})")
    for instance_type, cpus, gib in GENERAL_PURPOSE:
        if cpus >= need.vcpu and gib >= need.memory_gib:
            break
    return Choice(instance_type, False,
                  f"{instance_type} is the smallest general-purpose (ml.m5) instance with {_need_text(need)}; "
                  f"{cached.missing}, so the cheapest fitting one could not be picked "
                  f"(`modelbot prices refresh --region {region}` caches them)")


def misfit(instance_type: str, answers: dict) -> str:
    """Why the instance cannot serve the model, or ""."""
    need = Need(vcpu=number(answers.get("serving_vcpu")) or 0, memory_gib=number(answers.get("serving_memory_gib")) or 0)
    region = answers.get("region") or "us-east-1"
    cached = prices(region)
    if cached.offers:
        offer = cached.find(instance_type)
        if offer is None:
            return f"{instance_type} is not in {region}'s SageMaker hosting price list"
    else:
        known = {t: Offer(t, c, g, 0, None, 0.0) for t, c, g in GENERAL_PURPOSE}
        offer = known.get(instance_type)
        if offer is None:
            return ""  # no prices to check it against: SageMaker itself will say if it does not exist
    if not offer.fits(need):
        return f"{instance_type} has {offer.specs()}; serving needs {_need_text(need)}"
    return ""
