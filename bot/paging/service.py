"""Paging a human: opening a page, acknowledge/resolve, escalation, who may act on a page, what a page still owes.

A page is one row per incident (dedup key), written before anything is sent: a rollback writes it in its own
transaction, so a rollback is never without its page, whatever Slack, PagerDuty or the database do next. The
row's deliveries go out on their own: PagerDuty (bot/paging/pagerduty_events.py) and Slack
(bot/paging/slack_delivery.py), each with its own claim and back-off, neither waiting for the other, each
retried until it is done (the pagerduty_delivery and page_escalation jobs). `deliver` does both now, PagerDuty
first, for a caller that may wait (a click, a command).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from bot import audit
from bot.paging import messages, pagerduty_events, slack_delivery
# The button action ids are re-exported for the button listener (handlers/actions/page_buttons.py) and tests.
from bot.paging.messages import ACK_ACTION, RESOLVE_ACTION  # noqa: F401
from bot.paging.slack_delivery import BACKOFF_CAP_SECONDS, DeliveryFailed, get_page  # noqa: F401 -- callers, tests
from bot.paging.tables import ACKNOWLEDGED, ALERT_CHANNEL, OPEN, RESOLVED, Page, pagerduty_owed_clause
from bot.rights import NotAllowed
from bot.store.base import as_utc
from bot.store.foundation import database_now, insert_ignore

log = logging.getLogger(__name__)

KIND_ROLLBACK = "rollback"
# A click waits this long for a worker that is delivering the same page, so the message updates at once.
CLICK_CLAIM_WAIT_SECONDS = 5.0
# /healthz says degraded while a page has owed a delivery for longer than this.
OWED_TOO_LONG = timedelta(minutes=5)


def rollout_dedup_key(rollout_id: int) -> str:
    return f"modelbot-rollout-{rollout_id}"


# ---------------------------------------------------------------------------------------------------------
# Opening a page


def open_rollback_page(services, session: Session, *, model_name: str, rollout_id: int, reason: str,
                       automatic: bool, actor: str | None, channel: str | None, thread_ts: str | None) -> None:
    """The page of a rollback, in the rollback's own transaction (`session`); a second call finds it."""
    open_page(services, kind=KIND_ROLLBACK, dedup_key=rollout_dedup_key(rollout_id), model_name=model_name,
              rollout_id=rollout_id, title=messages.rollback_title(model_name, automatic=automatic, actor=actor),
              reason=reason, automatic=automatic, actor=actor, source_channel=channel, source_ts=thread_ts,
              session=session)


def page_rollback(services, *, model_name: str, rollout_id: int, reason: str, channel: str | None,
                  thread_ts: str | None, automatic: bool, actor: str | None) -> None:
    """Pages the on-call about a rollback and delivers it now; safe to call again for the same rollout."""
    with services.store.session() as s:
        open_rollback_page(services, s, model_name=model_name, rollout_id=rollout_id, reason=reason,
                           automatic=automatic, actor=actor, channel=channel, thread_ts=thread_ts)
    page = page_for_rollout(services, rollout_id)
    deliver(services, page.id)


def open_page(
    services,
    *,
    kind: str,
    dedup_key: str,
    model_name: str | None,
    title: str,
    reason: str | None,
    automatic: bool = False,
    actor: str | None = None,
    source_channel: str | None = None,
    source_ts: str | None = None,
    rollout_id: int | None = None,
    session: Session | None = None,
) -> int:
    """Writes the page row (first caller wins; later callers get the same page) and returns its id; in
    `session` when given (the transaction of what is paged about).

    `title` is mrkdwn the caller has escaped; `reason` is escaped when shown. With no alert channel in the
    models file and no thread, the alert goes to the model's channel, then to the admins (the places of
    bot/paging/slack_delivery.py); PagerDuty gets it regardless.
    """
    registry = services.registry
    model = registry.get(model_name) if model_name else None
    oncall = model.oncall if model else registry.defaults.oncall
    alert_channel = (model.alert_channel if model else registry.defaults.alert_channel) or source_channel or ""
    if oncall:
        notify = [oncall]
    else:  # nobody on call in the models file: the people who can act on the model are the next best
        notify = list(model.owners if model else ()) or list(registry.defaults.admins)
    pagerduty = bool(services.settings.PAGERDUTY_ROUTING_KEY)

    def write(s: Session) -> int:
        now = database_now(s)
        values = {
            "kind": kind, "dedup_key": dedup_key, "model": model_name, "rollout_id": rollout_id, "title": title,
            "reason": reason, "automatic": automatic, "actor": actor, "source_channel": source_channel,
            "source_ts": source_ts, "notify": " ".join(notify),
            "dm_user": oncall if oncall and oncall[0] in "UW" else None, "pagerduty": pagerduty, "state": OPEN,
            "created_at": now, "alert_channel": alert_channel, "version": 1, "alert_version": 0,
            "dm_version": 0, "settled_version": 0, "attempts": 0, "next_attempt_at": now, "owed_since": now,
            "alert_place": ALERT_CHANNEL, "pd_attempts": 0, "pd_next_attempt_at": now if pagerduty else None,
            "pd_owed_since": now if pagerduty else None,
        }
        if insert_ignore(s, Page.__table__, values, ["dedup_key"]):
            log.info("page %s opened (%s, model %s)", dedup_key, kind, model_name)
        return s.scalar(select(Page.id).where(Page.dedup_key == dedup_key))

    if session is not None:
        return write(session)
    with services.store.session() as s:
        return write(s)


# ---------------------------------------------------------------------------------------------------------
# Reading


def page_by_key(services, dedup_key: str) -> Page | None:
    with services.store.session() as s:
        return s.scalars(select(Page).where(Page.dedup_key == dedup_key)).first()


def page_for_rollout(services, rollout_id: int) -> Page | None:
    return page_by_key(services, rollout_dedup_key(rollout_id))


# ---------------------------------------------------------------------------------------------------------
# Acknowledge / resolve / escalate: state changes first (audited in the same transaction), then the deliveries


def acknowledge(services, page_id: int, user_id: str) -> bool:
    """Open -> acknowledged. False when the page was not open (already acknowledged or resolved)."""
    with services.store.session() as s:
        now = database_now(s)
        changed = s.execute(
            update(Page)
            .where(Page.id == page_id, Page.state == OPEN)
            .values(state=ACKNOWLEDGED, acknowledged_by=user_id, acknowledged_at=now, version=Page.version + 1,
                    **_owed_now(now))
        ).rowcount == 1
        if changed:
            page = s.get(Page, page_id)
            audit.add(s, user_id=user_id, action="page_acknowledge", model=page.model, outcome="ok",
                      page=page.dedup_key)
    if changed:
        deliver(services, page_id, wait=CLICK_CLAIM_WAIT_SECONDS)
    return changed


def resolve(services, page_id: int, user_id: str | None, *, wait: float = CLICK_CLAIM_WAIT_SECONDS,
            send: bool = True) -> bool:
    """Open or acknowledged -> resolved (user_id None: modelbot resolved it). False when already resolved.
    send=False: the state only; the delivery jobs send the updates (for a caller that must not wait)."""
    with services.store.session() as s:
        now = database_now(s)
        changed = s.execute(
            update(Page)
            .where(Page.id == page_id, Page.state.in_((OPEN, ACKNOWLEDGED)))
            .values(state=RESOLVED, resolved_by=user_id, resolved_at=now, version=Page.version + 1,
                    **_owed_now(now))
        ).rowcount == 1
        if changed:
            page = s.get(Page, page_id)
            audit.add(s, user_id=user_id or "modelbot", action="page_resolve", model=page.model, outcome="ok",
                      page=page.dedup_key)
    if changed and send:
        deliver(services, page_id, wait=wait)
    return changed


def resolve_for_rollout(services, rollout_id: int, actor: str | None = None, *, send: bool = True) -> None:
    """Resolves the rollout's page, if it has one that is not resolved yet (PagerDuty too). send=False (the
    rollout controller): only the state; the delivery jobs send the updates."""
    page = page_for_rollout(services, rollout_id)
    if page is not None:
        resolve(services, page.id, actor, wait=0.0, send=send)


def claim_escalations(services, now: datetime) -> list[int]:
    """Marks open pages older than the escalation time as escalated (each exactly once); returns their ids."""
    cutoff = now - timedelta(minutes=services.settings.MODELBOT_PAGE_ESCALATION_MINUTES)
    with services.store.session() as s:
        due = list(s.scalars(
            select(Page.id).where(Page.state == OPEN, Page.escalated_at.is_(None), Page.created_at <= cutoff)
            .order_by(Page.id)
        ))
    claimed = []
    for page_id in due:
        with services.store.session() as s:
            # The state test again: an acknowledge between the select and here wins.
            won = s.execute(
                update(Page)
                .where(Page.id == page_id, Page.state == OPEN, Page.escalated_at.is_(None))
                .values(escalated_at=now, version=Page.version + 1, **_owed_now(now))
            ).rowcount == 1
        if won:
            claimed.append(page_id)
    return claimed


def _owed_now(now: datetime) -> dict:
    """Column values for a change that makes the page owe deliveries: due at once, owed since the first such
    (PagerDuty's part is only due when the page has one: Page.pagerduty_owed)."""
    return {"next_attempt_at": now, "owed_since": func.coalesce(Page.owed_since, now),
            "pd_next_attempt_at": now, "pd_owed_since": func.coalesce(Page.pd_owed_since, now)}


def owed_pages(services, limit: int = 100, now: datetime | None = None) -> list[int]:
    """Pages that owe a Slack delivery now (due by next_attempt_at, earliest first) and that nobody is
    delivering. (PagerDuty's: bot/paging/pagerduty_events.owed.)"""
    due = func.coalesce(Page.next_attempt_at, Page.created_at)
    with services.store.session() as s:
        now = now or database_now(s)
        return list(s.scalars(
            select(Page.id)
            .where(Page.settled_version < Page.version)
            .where(or_(Page.claim_until.is_(None), Page.claim_until < now))
            .where(due <= now)
            .order_by(due, Page.id)
            .limit(limit)
        ))


def owed_too_long(services, now: datetime | None = None) -> list[dict]:
    """Pages that have owed a delivery (Slack or PagerDuty) for more than OWED_TOO_LONG: what /healthz names
    (no raw error texts)."""
    slack_since = func.coalesce(Page.owed_since, Page.created_at)
    pd_since = func.coalesce(Page.pd_owed_since, Page.created_at)
    with services.store.session() as s:
        now = now or database_now(s)
        cutoff = now - OWED_TOO_LONG
        pages = list(s.scalars(
            select(Page).where(or_(
                (Page.settled_version < Page.version) & (slack_since <= cutoff),
                pagerduty_owed_clause() & (pd_since <= cutoff),
            )).order_by(Page.created_at).limit(20)
        ))
    report = []
    for page in pages:
        since = [as_utc(t) for t, owes in ((page.owed_since or page.created_at, page.settled_version < page.version),
                                            (page.pd_owed_since or page.created_at, bool(page.pagerduty_owed())))
                 if owes]
        report.append({
            "page": page.dedup_key,
            "model": page.model,
            "owed_minutes": round((now - min(since)).total_seconds() / 60, 1) if since else 0.0,
            "owes": owed_parts(page),
            "attempts": page.attempts + page.pd_attempts,
            "alert_place": page.alert_place,
            "errors": sorted(set(_error_codes(page.last_error)) | set(_error_codes(page.pd_last_error))),
        })
    return report


def owed_parts(page: Page) -> list[str]:
    """What of the page is not delivered yet, by name."""
    parts = []
    if not page.alert_ts:
        parts.append("alert")
    if page.dm_user and not page.dm_ts and not page.dm_refused:
        parts.append("dm")
    parts += [f"pagerduty_{event}" for event in page.pagerduty_owed() if event == "trigger"]
    if page.escalated_at and not page.escalation_ts and page.state == OPEN:
        parts.append("escalation")
    if page.alert_ts and page.alert_version < page.version:
        parts.append("alert_update")
    if page.dm_ts and page.dm_version < page.version:
        parts.append("dm_update")
    parts += [f"pagerduty_{event}" for event in page.pagerduty_owed() if event != "trigger"]
    return parts


def _error_codes(text: str | None) -> list[str]:
    """The short error classes DeliveryFailed messages carry in [brackets]."""
    codes, rest = [], text or ""
    while "[" in rest and "]" in rest:
        start = rest.index("[")
        end = rest.index("]", start) if "]" in rest[start:] else len(rest)
        codes.append(rest[start + 1:end][:64])
        rest = rest[end + 1:]
    return codes


# ---------------------------------------------------------------------------------------------------------
# Who may acknowledge or resolve


def require_page_rights(services, user_id: str, page: Page, action: str) -> None:
    """The on-call (a member of the on-call group counts), the model's owners and admins; NotAllowed otherwise."""
    registry = services.registry
    model = registry.get(page.model) if page.model else None
    oncall_ids = set(page.notify_ids())
    if model and model.oncall:
        oncall_ids.add(model.oncall)  # whoever is on call now may take over an older page
    users = {u for u in oncall_ids if u[0] in "UW"} | set(registry.defaults.admins)
    if model:
        users |= set(model.owners)
    if user_id in users:
        return
    unlisted = None
    for group in sorted(u for u in oncall_ids if u.startswith("S")):
        try:
            members = services.slack.usergroups_users_list(usergroup=group).get("users") or []
        except (SlackApiError, OSError) as exc:
            log.warning("page %s: could not read members of %s: %s", page.dedup_key, group, exc)
            unlisted = group
            continue
        if user_id in members:
            return
    raise NotAllowed(messages.not_allowed_text(
        action, oncall=oncall_ids, model_name=model.name if model else None, owners=model.owners if model else (),
        admins=registry.defaults.admins, unlisted_group=unlisted))


# ---------------------------------------------------------------------------------------------------------
# Delivery


def deliver(services, page_id: int, *, wait: float = 0.0) -> bool:
    """Sends whatever the page owes now: PagerDuty first (it never waits for Slack), then Slack. True when
    nothing is owed afterwards. Failures stay owed and are retried by the delivery jobs."""
    paged = pagerduty_events.deliver(services, page_id)
    told = slack_delivery.deliver(services, page_id, wait=wait)
    return paged and told
