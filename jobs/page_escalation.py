"""Page escalation: completes every delivery a page still owes, and escalates pages nobody acknowledged.

An open page older than MODELBOT_PAGE_ESCALATION_MINUTES is escalated exactly once: the claim is a
conditional UPDATE of escalated_at, so two workers (or two passes) cannot both win it; the escalation post
(the on-call again, plus the admins, in the page's thread) is then a delivery like any other.
"""

from __future__ import annotations

from datetime import datetime

from bot.paging import service as pager
from bot.store.base import utcnow

NAME = "page_escalation"


def run_once(services, now: datetime | None = None) -> str:
    now = now or utcnow()
    escalated = pager.claim_escalations(services, now)
    settled, failing = 0, []
    for page_id in pager.owed_pages(services):
        if pager.deliver(services, page_id):
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
