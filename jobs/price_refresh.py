"""Keeps the SageMaker price cache fresh for every region the registry uses.

A region is refreshed when its stored prices are missing or older than 24 h (MODELBOT_PRICE_REFRESH_HOURS; 0
turns the job off); a region whose last attempt failed waits pricing.RETRY_AFTER before the next one, so a
broken network does not turn into a bulk download every pass.
"""

from __future__ import annotations

import logging

from bot.pricing import service as pricing
from bot.integrations.price_list import PriceListError

log = logging.getLogger(__name__)

NAME = "price_refresh"


def registry_regions(registry) -> set[str]:
    return {m.region for m in registry.models.values()} | {registry.defaults.region}


def run_once(services) -> str:
    max_age = pricing.refresh_after()
    if max_age is None:
        return f"turned off ({pricing.REFRESH_HOURS_ENV}=0)"
    states = pricing.region_states(services.store, registry_regions(services.registry), max_age=max_age)
    due = {r: why for r, (state, why) in states.items() if state == "due"}
    waiting = [f"{r} waiting to retry ({why})" for r, (state, why) in states.items() if state == "waiting"]
    if not due:
        return "; ".join(waiting) if waiting else "prices are fresh"
    done: list[str] = []
    failed: list[str] = []
    for region, why in due.items():
        try:
            result = pricing.refresh_region(services.store, services.price_list, region, "auto")
        except PriceListError as exc:
            log.warning("price refresh of %s failed: %s", region, exc)
            failed.append(f"{region} failed ({exc})")
            continue
        done.append(f"{region} ({why}): {result.rows} prices from {result.source}"
                    + (f", {result.skipped} skipped" if result.skipped else ""))
    return "; ".join(done + failed + waiting)
