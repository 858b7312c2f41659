"""PagerDuty delivery: every trigger, acknowledge and resolve a page owes, on its own thread.

PagerDuty is how a page gets through when Slack does not: this job never calls Slack, so a stalled or
rate-limiting Slack (which holds the page_escalation and outbox_delivery threads) cannot delay it. A page's
PagerDuty events go out within one pass of the rollback that opened the page (MODELBOT_JOB_INTERVAL_SECONDS);
one that failed backs off (15 s doubling, 5 min cap) and is retried until PagerDuty has it.
"""

from __future__ import annotations

import time
from datetime import datetime

from bot.paging import pagerduty_events

NAME = "pagerduty_delivery"

# One pass stops taking pages after this long, so the pass ends; the rest are due on the next pass.
PASS_BUDGET_SECONDS = 60.0


def run_once(services, now: datetime | None = None) -> str:
    started = time.monotonic()
    sent, failing = 0, 0
    for page_id in pagerduty_events.owed(services, now=now):
        if time.monotonic() - started > PASS_BUDGET_SECONDS:
            break
        if pagerduty_events.deliver(services, page_id):
            sent += 1
        else:
            failing += 1
    parts = []
    if sent:
        parts.append(f"sent what {sent} page(s) owed PagerDuty")
    if failing:
        parts.append(f"{failing} page(s) not accepted by PagerDuty yet (retried with back-off)")
    return "; ".join(parts) or "nothing owed to PagerDuty"
