"""A page's PagerDuty part: the Events API v2 trigger, acknowledge and resolve, one incident per dedup key.

PagerDuty is the way a page gets through when Slack does not, so it is delivered on its own: its own claim
(pd_claim_holder/pd_claim_until), its own back-off, its own job (jobs/pagerduty_delivery.py), and no Slack call
anywhere on its way (the incident links the rollout's thread by the permalink the Slack part recorded, else
by the thread's plain archive link). Each event is recorded only after PagerDuty accepted it, and is retried
until it is, however long PagerDuty refuses or is unreachable.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update

from bot.integrations.pagerduty import PagerDuty, PagerDutyError
from bot.paging import claims, messages
from bot.paging.tables import Page, pagerduty_owed_clause
from bot.store.foundation import database_now

log = logging.getLogger(__name__)

# Longer than one event's worst case: PagerDuty's 10 s timeout times its 4 attempts, with their back-off.
CLAIM_SECONDS = 120
# A page whose event failed is tried again after BACKOFF_SECONDS, doubled per failed pass, at most this.
BACKOFF_SECONDS = 15.0
BACKOFF_CAP_SECONDS = 300.0


def backoff_seconds(attempts: int) -> float:
    return min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2 ** max(0, min(attempts, 20) - 1))


def owed(services, *, now: datetime | None = None, limit: int = 100) -> list[int]:
    """Pages owing a PagerDuty event now (due by pd_next_attempt_at, earliest first), nobody sending them."""
    with services.store.session() as s:
        now = now or database_now(s)
        due = func.coalesce(Page.pd_next_attempt_at, Page.created_at)
        return list(s.scalars(
            select(Page.id).where(pagerduty_owed_clause())
            .where(or_(Page.pd_claim_until.is_(None), Page.pd_claim_until < now))
            .where(due <= now).order_by(due, Page.id).limit(limit)))


def deliver(services, page_id: int, *, wait: float = 0.0) -> bool:
    """Sends the PagerDuty events the page owes, in order. True when none is owed afterwards; False when one
    failed (recorded on the page, retried after the back-off) or another process is sending them."""
    def send_owed() -> bool:
        for _ in range(3):  # an acknowledge or resolve that came while an event was on its way
            with services.store.session() as s:
                page = s.get(Page, page_id)
            events = page.pagerduty_owed() if page is not None else []
            if not events:
                _settled(services, page_id)
                return True
            client = _client(services, page)
            if client is None:
                return True
            try:
                _send(services, client, page, events[0])
            except PagerDutyError as exc:
                log.warning("page %s: %s", page.dedup_key, exc)
                _failed(services, page_id, str(exc))
                return False
        return False

    return bool(claims.holding(services, page_id, claims.PAGERDUTY, seconds=CLAIM_SECONDS, wait=wait,
                               work=send_owed))


def _client(services, page: Page) -> PagerDuty | None:
    client = PagerDuty.from_settings(services.settings)
    if client is None:
        # Unset on purpose since the page was opened: nothing left to send to.
        log.warning("page %s: PAGERDUTY_ROUTING_KEY is no longer set; PagerDuty events for it are dropped",
                    page.dedup_key)
        _record(services, page.id, pagerduty=False, pd_owed_since=None, pd_next_attempt_at=None)
    return client


def thread_link(page: Page) -> str | None:
    """The rollout thread: its permalink when the Slack part recorded one, else Slack's plain archive link
    (which opens in the reader's workspace); never a Slack call."""
    if page.source_link:
        return page.source_link
    if page.source_channel and page.source_ts:
        return f"https://slack.com/archives/{page.source_channel}/p{page.source_ts.replace('.', '')}"
    return None


def _send(services, client: PagerDuty, page: Page, event: str) -> None:
    if event == "trigger":
        link = thread_link(page)
        details = {"model": page.model, "kind": page.kind, "reason": page.reason, "automatic": page.automatic,
                   "actor": page.actor, "rollout_id": page.rollout_id, "slack_thread": link}
        client.trigger(
            page.dedup_key,
            summary=messages.plain_summary(page),
            source=f"modelbot/{page.model}" if page.model else "modelbot",
            severity="error",
            component=page.model,
            group="modelbot",
            event_class=page.kind,
            custom_details={k: v for k, v in details.items() if v is not None},
            links=[{"href": link, "text": "Rollout thread in Slack"}] if link else None,
            client="modelbot",
            client_url=link,
        )
    elif event == "acknowledge":
        client.acknowledge(page.dedup_key)
    else:
        client.resolve(page.dedup_key)
    with services.store.session() as s:
        s.execute(update(Page).where(Page.id == page.id).values({f"pd_{_DONE[event]}_at": database_now(s)}))


_DONE = {"trigger": "triggered", "acknowledge": "acknowledged", "resolve": "resolved"}


def _failed(services, page_id: int, error: str) -> None:
    with services.store.session() as s:
        attempts = (s.scalar(select(Page.pd_attempts).where(Page.id == page_id)) or 0) + 1
        s.execute(update(Page).where(Page.id == page_id).values(
            pd_attempts=attempts, pd_last_error=error[:2000],
            pd_next_attempt_at=database_now(s) + timedelta(seconds=backoff_seconds(attempts))))


def _settled(services, page_id: int) -> None:
    _record(services, page_id, pd_attempts=0, pd_last_error=None, pd_next_attempt_at=None, pd_owed_since=None)


def _record(services, page_id: int, **values) -> None:
    with services.store.session() as s:
        s.execute(update(Page).where(Page.id == page_id).values(**values))
