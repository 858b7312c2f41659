"""Page escalation: completes every Slack delivery a page still owes, and escalates pages nobody acknowledged.

Owed deliveries are taken by next attempt time (a failing page backs off); a page refused for good at one
place moves on to the next (bot/paging/slack_delivery.py). An open page older than
MODELBOT_PAGE_ESCALATION_MINUTES is escalated exactly once: the claim is a conditional UPDATE of escalated_at,
so two workers (or two passes) cannot both win it; the escalation post (the on-call again, plus the admins, in
the page's thread) is then a delivery like any other. PagerDuty is not sent from here: its own job
(jobs/pagerduty_delivery.py) never waits behind Slack.
"""

from __future__ import annotations

import time
from datetime import datetime

from bot.paging import service as pager
from bot.paging import slack_delivery
from bot.store.foundation import database_now

NAME = "page_escalation"


# One pass stops taking pages after this long, so the pass ends; the rest are due on the next pass.
PASS_BUDGET_SECONDS = 60.0


def run_once(services, now: datetime | None = None) -> str:
    if now is None:
        with services.store.session() as s:
            now = database_now(s)
    escalated = pager.claim_escalations(services, now)
    settled, failing = 0, []
    started = time.monotonic()
    # Due pages, earliest next attempt first: a page that failed backs off behind the others, so a few
    # pages that keep failing never hold back a new one.
    for page_id in pager.owed_pages(services, now=now):
        if time.monotonic() - started > PASS_BUDGET_SECONDS:
            break
        if slack_delivery.deliver(services, page_id):
            settled += 1
            continue
        page = pager.get_page(services, page_id)
        if page is not None and page.last_error:
            failing.append(f"{page.dedup_key}: {page.last_error}")
    parts = []
    if escalated:
        parts.append(f"escalated {len(escalated)} unacknowledged page(s)")
    if settled:
        parts.append(f"completed the deliveries of {settled} page(s)")
    if failing:
        parts.append(f"{len(failing)} page(s) still failing: " + " | ".join(failing[:3]))
    return "; ".join(parts) or "nothing owed, nothing to escalate"
