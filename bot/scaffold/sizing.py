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

# SageMaker's general-purpose family, offered in every region (vCPU, GiB): the choice when no prices are cached.
GENERAL_PURPOSE = (("ml.m5.large", 2, 8), ("ml.m5.xlarge", 4, 16), ("ml.m5.2xlarge", 8, 32),
                   ("ml.m5.4xlarge", 16, 64), ("ml.m5.12xlarge", 48, 192), ("ml.m5.24xlarge", 96, 384))


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


@functools.lru_cache(maxsize=64)
def _quote(url: str | None, why_none: str, region: str, vcpu: float, memory_gib: float
           ) -> tuple[pricing.Quote | None, str]:
    """modelbot's own answer to "the cheapest instance that fits" (bot/pricing), or why there is none."""
    if url is None:
        return None, why_none
    store = Store(url)
    try:
        return pricing.quote(store, region, Need(vcpu=vcpu, memory_gib=memory_gib), limit=1), ""
    except pricing.NoPrices:
        return None, f"no SageMaker prices are cached in modelbot's database for {region}"
    except SQLAlchemyError as exc:
        return None, f"modelbot's database could not be read ({str(exc).splitlines()[0] if str(exc) else exc!r})"
    finally:
        store.dispose()


@functools.lru_cache(maxsize=64)
def _offer(url: str, region: str, instance_type: str) -> Offer | None:
    store = Store(url)
    try:
        with store.session() as s:
            return pricing.offer_for(s, region, instance_type)
    finally:
        store.dispose()


def forget() -> None:
    """Drop what was read (prices change when `modelbot prices refresh` runs)."""
    _quote.cache_clear()
    _offer.cache_clear()


def _need(vcpu: Any, memory_gib: Any) -> Need:
    return Need(vcpu=number(vcpu) or 0, memory_gib=number(memory_gib) or 0)


def choose(vcpu: Any, memory_gib: Any, region: str) -> Choice:
    need = _need(vcpu, memory_gib)
    url, why_none = _database_url()
    quote, missing = _quote(url, why_none, region, need.vcpu, need.memory_gib)
    if quote is not None and quote.offers:
        best = quote.offers[0]
        return Choice(best.instance_type, True,
                      f"{best.instance_type} is the cheapest SageMaker hosting instance with at least "
                      f"{need.describe()} in {region}: {formatting.money(best.usd_per_hour)}/h, about "
                      f"{formatting.money(best.usd_per_month)}/month (modelbot's cached prices: {quote.freshness()})")
    if quote is not None and quote.largest is not None:
        largest = quote.largest
        return Choice(largest.instance_type, True,
                      f"no SageMaker hosting instance in {region} has at least {need.describe()}; the largest is "
                      f"{largest.instance_type} ({largest.specs()})")
    for instance_type, cpus, gib in GENERAL_PURPOSE:
        if cpus >= need.vcpu and gib >= need.memory_gib:
            break
    return Choice(instance_type, False,
                  f"{instance_type} is the smallest general-purpose (ml.m5) instance with at least "
                  f"{need.describe()}; {missing}, so the cheapest fitting one could not be picked "
                  f"(`modelbot prices refresh --region {region}` caches them)")


def misfit(instance_type: str, answers: dict) -> str:
    """Why the instance cannot serve the model, or ""."""
    need = _need(answers.get("serving_vcpu"), answers.get("serving_memory_gib"))
    region = answers.get("region") or "us-east-1"
    url, why_none = _database_url()
    priced, _ = _quote(url, why_none, region, 0, 0)
    if priced is not None:
        offer = _offer(url, region, instance_type)
        if offer is None:
            return f"{instance_type} is not in {region}'s SageMaker hosting price list"
    else:
        offer = next((Offer(t, c, g, 0, None, 0.0) for t, c, g in GENERAL_PURPOSE if t == instance_type), None)
        if offer is None:
            return ""  # no prices to check it against: SageMaker itself will say if it does not exist
    if not offer.fits(need):
        return f"{instance_type} has {offer.specs()}; serving needs at least {need.describe()}"
    return ""
