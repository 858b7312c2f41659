"""Paging a human: the alert-channel post, the DM to a user on-call, PagerDuty, escalation, acknowledge/resolve.

Never lost, never sent twice. The page row is written first (one per dedup key: a second call for the same
rollout finds it); each delivery is recorded only after Slack or PagerDuty accepted it; whatever is still
owed is sent by the next caller or by the page_escalation job. A claim on the row (claim_holder/claim_until)
keeps two processes from delivering the same page at the same time.

The one window left: a crash after Slack accepted a post and before the database recorded it. After the
claim expires (CLAIM_SECONDS) that post is sent again; everything else is exactly once.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import datetime, timedelta
from typing import Callable

from slack_sdk.errors import SlackApiError
from sqlalchemy import or_, select, update

from bot import audit
from bot.errors import ExternalError
from bot.integrations.pagerduty import PagerDuty, PagerDutyError
from bot.rights import NotAllowed
from bot.slack.text import escape, mention
from bot.store.base import as_utc, utcnow
from bot.store.foundation import Thread, insert_ignore
from bot.paging.tables import ACKNOWLEDGED, OPEN, RESOLVED, Page

log = logging.getLogger(__name__)

KIND_ROLLBACK = "rollback"
ACK_ACTION = "page_acknowledge"
RESOLVE_ACTION = "page_resolve"
# Longer than the slowest delivery pass (Slack's 10 s timeout with its retries, PagerDuty's retries).
CLAIM_SECONDS = 120
# A click waits this long for a worker that is delivering the same page, so the message updates at once.
CLICK_CLAIM_WAIT_SECONDS = 5.0
# Slack answers that mean the message to update is gone for good: retrying would never succeed.
_GONE = {"message_not_found", "cant_update_message", "channel_not_found", "is_archived", "msg_too_long"}


class DeliveryFailed(ExternalError):
    """One delivery of a page was not accepted; it stays owed and is retried."""


def rollout_dedup_key(rollout_id: int) -> str:
    return f"modelbot-rollout-{rollout_id}"


# ---------------------------------------------------------------------------------------------------------
# Opening a page


def page_rollback(
    services,
    *,
    model_name: str,
    rollout_id: int,
    reason: str,
    channel: str,
    thread_ts: str,
    automatic: bool,
    actor: str | None,
) -> None:
    """Pages the on-call about a rollback; safe to call again for the same rollout (it only completes)."""
    if automatic:
        how = "automatically by the rollout controller"
    elif actor:
        how = f"by {mention(actor)}"
    else:
        how = "by hand"
    page_id = open_page(
        services,
        kind=KIND_ROLLBACK,
        dedup_key=rollout_dedup_key(rollout_id),
        model_name=model_name,
        rollout_id=rollout_id,
        title=f"*{escape(model_name)}* was rolled back {how}",
        reason=reason,
        automatic=automatic,
        actor=actor,
        source_channel=channel,
        source_ts=thread_ts,
    )
    deliver(services, page_id)


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
) -> int:
    """Writes the page row (first caller wins; later callers get the same page) and returns its id.

    `title` is mrkdwn the caller has escaped; `reason` is escaped when shown.
    """
    registry = services.registry
    model = registry.get(model_name) if model_name else None
    oncall = model.oncall if model else registry.defaults.oncall
    alert_channel = (model.alert_channel if model else registry.defaults.alert_channel) or source_channel
    if not alert_channel:
        raise ValueError(f"page {dedup_key}: no alert_channel in the models file and no thread to page in")
    if oncall:
        notify = [oncall]
    else:  # nobody on call in the models file: the people who can act on the model are the next best
        notify = list(model.owners if model else ()) or list(registry.defaults.admins)
    values = {
        "kind": kind,
        "dedup_key": dedup_key,
        "model": model_name,
        "rollout_id": rollout_id,
        "title": title,
        "reason": reason,
        "automatic": automatic,
        "actor": actor,
        "source_channel": source_channel,
        "source_ts": source_ts,
        "notify": " ".join(notify),
        "dm_user": oncall if oncall and oncall[0] in "UW" else None,
        "pagerduty": bool(services.settings.PAGERDUTY_ROUTING_KEY),
        "state": OPEN,
        "created_at": utcnow(),
        "alert_channel": alert_channel,
        "version": 1,
        "alert_version": 0,
        "dm_version": 0,
        "settled_version": 0,
        "attempts": 0,
    }
    with services.store.session() as s:
        if insert_ignore(s, Page.__table__, values, ["dedup_key"]):
            log.info("page %s opened (%s, model %s)", dedup_key, kind, model_name)
        return s.scalar(select(Page.id).where(Page.dedup_key == dedup_key))


# ---------------------------------------------------------------------------------------------------------
# Reading


def get_page(services, page_id: int) -> Page | None:
    with services.store.session() as s:
        return s.get(Page, page_id)


def page_by_key(services, dedup_key: str) -> Page | None:
    with services.store.session() as s:
        return s.scalars(select(Page).where(Page.dedup_key == dedup_key)).first()


def page_for_rollout(services, rollout_id: int) -> Page | None:
    return page_by_key(services, rollout_dedup_key(rollout_id))


# ---------------------------------------------------------------------------------------------------------
# Acknowledge / resolve / escalate: state changes first, then the deliveries they make owed


def acknowledge(services, page_id: int, user_id: str) -> bool:
    """Open -> acknowledged. False when the page was not open (already acknowledged or resolved)."""
    now = utcnow()
    with services.store.session() as s:
        changed = s.execute(
            update(Page)
            .where(Page.id == page_id, Page.state == OPEN)
            .values(state=ACKNOWLEDGED, acknowledged_by=user_id, acknowledged_at=now, version=Page.version + 1)
        ).rowcount == 1
    if changed:
        page = get_page(services, page_id)
        audit.record(services.store, user_id=user_id, action="page_acknowledge", model=page.model, outcome="ok",
                     page=page.dedup_key)
        deliver(services, page_id, wait=CLICK_CLAIM_WAIT_SECONDS)
    return changed


def resolve(services, page_id: int, user_id: str | None, *, wait: float = CLICK_CLAIM_WAIT_SECONDS) -> bool:
    """Open or acknowledged -> resolved (user_id None: modelbot resolved it). False when already resolved."""
    now = utcnow()
    with services.store.session() as s:
        changed = s.execute(
            update(Page)
            .where(Page.id == page_id, Page.state.in_((OPEN, ACKNOWLEDGED)))
            .values(state=RESOLVED, resolved_by=user_id, resolved_at=now, version=Page.version + 1)
        ).rowcount == 1
    if changed:
        page = get_page(services, page_id)
        audit.record(services.store, user_id=user_id or "modelbot", action="page_resolve", model=page.model,
                     outcome="ok", page=page.dedup_key)
        deliver(services, page_id, wait=wait)
    return changed


def resolve_for_rollout(services, rollout_id: int, actor: str | None = None) -> None:
    """Resolves the rollout's page, if it has one that is not resolved yet (PagerDuty too).

    Called from the rollout controller's tick: it does not wait for a process busy delivering the same page
    (that process, or the next page_escalation pass, sends the update).
    """
    page = page_for_rollout(services, rollout_id)
    if page is not None:
        resolve(services, page.id, actor, wait=0.0)


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
                .values(escalated_at=now, version=Page.version + 1)
            ).rowcount == 1
        if won:
            claimed.append(page_id)
    return claimed


def owed_pages(services, limit: int = 100) -> list[int]:
    """Pages that still owe a delivery and that nobody is delivering right now."""
    now = utcnow()
    with services.store.session() as s:
        return list(s.scalars(
            select(Page.id)
            .where(Page.settled_version < Page.version)
            .where(or_(Page.claim_until.is_(None), Page.claim_until < now))
            .order_by(Page.id)
            .limit(limit)
        ))


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
    problem = ""
    for group in sorted(u for u in oncall_ids if u.startswith("S")):
        try:
            members = services.slack.usergroups_users_list(usergroup=group).get("users") or []
        except (SlackApiError, OSError) as exc:
            log.warning("page %s: could not read members of %s: %s", page.dedup_key, group, exc)
            problem = f" (Slack did not list the members of {mention(group)}, so on-call membership was not checked)"
            continue
        if user_id in members:
            return
    who = [mention(u) for u in sorted(oncall_ids)]
    if model and model.owners:
        who.append(f"the owners of *{escape(model.name)}* ({', '.join(mention(u) for u in model.owners)})")
    who.append("an admin" + (f" ({', '.join(mention(u) for u in registry.defaults.admins)})"
                             if registry.defaults.admins else ""))
    raise NotAllowed(f"Only the on-call {', '.join(who)} may {action} this page.{problem}")


# ---------------------------------------------------------------------------------------------------------
# Delivery


def deliver(services, page_id: int, *, wait: float = 0.0) -> bool:
    """Sends whatever the page still owes. True when nothing is owed afterwards.

    Delivery failures are recorded on the page (last_error) and logged, not raised: the page stays owed and
    the page_escalation job retries it. Returns False at once (after `wait`) when another process holds the
    page: that process sends what is owed, including changes made while it works.
    """
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + wait
    while not _claim(services, page_id, holder):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    try:
        # Another pass when someone changed the page while we delivered (a click during the post).
        for _ in range(3):
            settled, failed = _deliver_pass(services, page_id)
            if settled or failed:
                return settled
        return False
    finally:
        with services.store.session() as s:
            s.execute(update(Page).where(Page.id == page_id, Page.claim_holder == holder)
                      .values(claim_holder=None, claim_until=None))


def _claim(services, page_id: int, holder: str) -> bool:
    now = utcnow()
    with services.store.session() as s:
        return s.execute(
            update(Page)
            .where(Page.id == page_id, or_(Page.claim_until.is_(None), Page.claim_until < now))
            .values(claim_holder=holder, claim_until=now + timedelta(seconds=CLAIM_SECONDS))
        ).rowcount == 1


def _deliver_pass(services, page_id: int) -> tuple[bool, bool]:
    """One try at every owed delivery; each is independent (a failed DM does not hold back PagerDuty)."""
    page = get_page(services, page_id)
    if page is None:
        return True, False
    version = page.version
    failures: list[str] = []
    for step in _STEPS:
        page = get_page(services, page_id)
        try:
            step(services, page)
        except DeliveryFailed as exc:
            log.warning("page %s: %s", page.dedup_key, exc)
            failures.append(str(exc))
    with services.store.session() as s:
        if failures:
            s.execute(update(Page).where(Page.id == page_id)
                      .values(attempts=Page.attempts + 1, last_error="; ".join(failures)[:4000]))
            return False, True
        settled = s.execute(
            update(Page).where(Page.id == page_id, Page.version == version)
            .values(settled_version=version, last_error=None)
        ).rowcount == 1
    return settled, False


def _record(services, page_id: int, **values) -> None:
    with services.store.session() as s:
        s.execute(update(Page).where(Page.id == page_id).values(**values))


def _slack(what: str, call: Callable[[], dict]) -> dict:
    """Runs one Web API call; failures become DeliveryFailed naming Slack and what was not done."""
    try:
        return call()
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else None
        status = getattr(exc.response, "status_code", None)
        detail = error or "no error code"
        if status and status != 200:
            detail = f"HTTP {status}, {detail}"
        failure = DeliveryFailed(f"Slack did not {what} ({detail}); it will be retried")
        failure.slack_error = error
        raise failure from None
    except OSError as exc:  # URLError, timeouts, refused connections
        raise DeliveryFailed(f"Slack did not {what} (unreachable: {exc}); it will be retried") from None


def _ensure_source_link(services, page: Page) -> None:
    """The rollout thread's permalink, for the page to link to; the page goes out without it if Slack fails."""
    if page.source_link or not (page.source_channel and page.source_ts):
        return
    try:
        link = services.slack.chat_getPermalink(channel=page.source_channel, message_ts=page.source_ts)["permalink"]
    except (SlackApiError, OSError, KeyError) as exc:
        log.warning("page %s: no permalink for %s/%s: %s", page.dedup_key, page.source_channel, page.source_ts, exc)
        return
    _record(services, page.id, source_link=link)
    page.source_link = link


def _step_alert(services, page: Page) -> None:
    if page.alert_ts:
        return
    _ensure_source_link(services, page)
    text, blocks = render(services, page)
    response = _slack(
        f"post the page {page.dedup_key} in <#{page.alert_channel}>",
        lambda: services.slack.chat_postMessage(channel=page.alert_channel, text=text, blocks=blocks,
                                                unfurl_links=False),
    )
    with services.store.session() as s:
        s.execute(update(Page).where(Page.id == page.id)
                  .values(alert_ts=response["ts"], alert_channel=response.get("channel") or page.alert_channel,
                          alert_version=page.version))
        if page.model:
            # A mention inside the page's thread (`@modelbot status`) then acts on the page's model.
            insert_ignore(s, Thread.__table__,
                          {"kind": "page", "key": page.dedup_key, "model": page.model,
                           "channel": response.get("channel") or page.alert_channel, "ts": response["ts"],
                           "created_at": utcnow()},
                          ["kind", "key"])


def _step_dm(services, page: Page) -> None:
    if not page.dm_user or page.dm_ts:
        return
    channel = page.dm_channel
    if not channel:
        opened = _slack(f"open a DM with {page.dm_user} for the page {page.dedup_key}",
                        lambda: services.slack.conversations_open(users=page.dm_user))
        channel = opened["channel"]["id"]
        _record(services, page.id, dm_channel=channel)
    _ensure_source_link(services, page)
    text, blocks = render(services, page, for_dm=True)
    response = _slack(
        f"send the page {page.dedup_key} to {page.dm_user} by DM",
        lambda: services.slack.chat_postMessage(channel=channel, text=text, blocks=blocks, unfurl_links=False),
    )
    _record(services, page.id, dm_ts=response["ts"], dm_channel=response.get("channel") or channel,
            dm_version=page.version)


def _pagerduty(services, page: Page) -> PagerDuty | None:
    client = PagerDuty.from_settings(services.settings)
    if client is None:
        # Unset on purpose since the page was opened: nothing left to send to.
        log.warning("page %s: PAGERDUTY_ROUTING_KEY is no longer set; PagerDuty events for it are dropped",
                    page.dedup_key)
        _record(services, page.id, pagerduty=False)
    return client


def _step_pd_trigger(services, page: Page) -> None:
    if not page.pagerduty or page.pd_triggered_at:
        return
    client = _pagerduty(services, page)
    if client is None:
        return
    _ensure_source_link(services, page)
    details = {"model": page.model, "kind": page.kind, "reason": page.reason, "automatic": page.automatic,
               "actor": page.actor, "rollout_id": page.rollout_id, "slack_thread": page.source_link}
    try:
        client.trigger(
            page.dedup_key,
            summary=_plain(page),
            source=f"modelbot/{page.model}" if page.model else "modelbot",
            severity="error",
            component=page.model,
            group="modelbot",
            event_class=page.kind,
            custom_details={k: v for k, v in details.items() if v is not None},
            links=[{"href": page.source_link, "text": "Rollout thread in Slack"}] if page.source_link else None,
            client="modelbot",
            client_url=page.source_link,
        )
    except PagerDutyError as exc:
        raise DeliveryFailed(str(exc)) from None
    _record(services, page.id, pd_triggered_at=utcnow())


def _step_escalation(services, page: Page) -> None:
    if not page.escalated_at or page.escalation_ts or not page.alert_ts or page.state != OPEN:
        return
    minutes = f"{services.settings.MODELBOT_PAGE_ESCALATION_MINUTES:g}"
    who = " ".join(mention(u) for u in [*page.notify_ids(), *services.registry.defaults.admins])
    text = (f":rotating_light: *Escalated:* nobody has acknowledged this page in {minutes} minutes. "
            f"{who} please acknowledge or resolve it.")
    response = _slack(
        f"post the escalation of the page {page.dedup_key} in <#{page.alert_channel}>",
        lambda: services.slack.chat_postMessage(channel=page.alert_channel, thread_ts=page.alert_ts, text=text,
                                                reply_broadcast=True),
    )
    _record(services, page.id, escalation_ts=response["ts"])


def _sync(services, page: Page, *, channel: str | None, ts: str | None, seen: int, column: str, dm: bool) -> None:
    if not ts or seen >= page.version:
        return
    text, blocks = render(services, page, for_dm=dm)
    try:
        _slack(f"update the page {page.dedup_key} message in <#{channel}>",
               lambda: services.slack.chat_update(channel=channel, ts=ts, text=text, blocks=blocks))
    except DeliveryFailed as exc:
        if getattr(exc, "slack_error", None) not in _GONE:
            raise
        log.warning("page %s: message %s/%s can no longer be updated (%s)", page.dedup_key, channel, ts,
                    exc.slack_error)
    with services.store.session() as s:
        col = getattr(Page, column)
        s.execute(update(Page).where(Page.id == page.id, col < page.version).values({column: page.version}))


def _step_sync_alert(services, page: Page) -> None:
    _sync(services, page, channel=page.alert_channel, ts=page.alert_ts, seen=page.alert_version,
          column="alert_version", dm=False)


def _step_sync_dm(services, page: Page) -> None:
    _sync(services, page, channel=page.dm_channel, ts=page.dm_ts, seen=page.dm_version, column="dm_version", dm=True)


def _step_pd_acknowledge(services, page: Page) -> None:
    # After a resolve, acknowledging is moot: the resolve step closes the incident.
    if not (page.pagerduty and page.pd_triggered_at and page.acknowledged_at) or page.pd_acknowledged_at \
            or page.resolved_at:
        return
    client = _pagerduty(services, page)
    if client is None:
        return
    try:
        client.acknowledge(page.dedup_key)
    except PagerDutyError as exc:
        raise DeliveryFailed(str(exc)) from None
    _record(services, page.id, pd_acknowledged_at=utcnow())


def _step_pd_resolve(services, page: Page) -> None:
    if not (page.pagerduty and page.pd_triggered_at and page.resolved_at) or page.pd_resolved_at:
        return
    client = _pagerduty(services, page)
    if client is None:
        return
    try:
        client.resolve(page.dedup_key)
    except PagerDutyError as exc:
        raise DeliveryFailed(str(exc)) from None
    _record(services, page.id, pd_resolved_at=utcnow())


# In this order: the alert first (the DM and escalation refer to it), PagerDuty's trigger before its updates.
_STEPS = (
    _step_alert,
    _step_dm,
    _step_pd_trigger,
    _step_escalation,
    _step_sync_alert,
    _step_sync_dm,
    _step_pd_acknowledge,
    _step_pd_resolve,
)


# ---------------------------------------------------------------------------------------------------------
# The page message


def _when(value: datetime | None) -> str:
    """Shown in each reader's own time zone; the fallback is UTC."""
    value = as_utc(value)
    if value is None:
        return "at an unknown time"
    return f"<!date^{int(value.timestamp())}^{{date_short_pretty}} at {{time}}|{value:%Y-%m-%d %H:%M} UTC>"


def _plain(page: Page) -> str:
    """A one-line summary without Slack markup, for PagerDuty."""
    title = page.title.replace("*", "")
    if page.actor:
        title = title.replace(f"<@{page.actor}>", page.actor)
    return f"{title}: {page.reason}" if page.reason else title


def _state_lines(services, page: Page) -> list[str]:
    lines = []
    if page.state == OPEN:
        minutes = f"{services.settings.MODELBOT_PAGE_ESCALATION_MINUTES:g}"
        if page.escalated_at:
            admins = " ".join(mention(u) for u in services.registry.defaults.admins) or "nobody (no admins set)"
            lines.append(f":red_circle: *Open* since {_when(page.created_at)}, not acknowledged: escalated to "
                         f"{admins} {_when(page.escalated_at)}.")
        else:
            lines.append(f":red_circle: *Open* since {_when(page.created_at)}. Escalates to the admins if nobody "
                         f"acknowledges it within {minutes} minutes.")
    if page.acknowledged_at:
        lines.append(f":large_yellow_circle: *Acknowledged* by {mention(page.acknowledged_by)} "
                     f"{_when(page.acknowledged_at)}.")
    if page.state == RESOLVED:
        who = mention(page.resolved_by) if page.resolved_by else "modelbot"
        lines.append(f":white_check_mark: *Resolved* by {who} {_when(page.resolved_at)}.")
    return lines


def _buttons(page: Page) -> dict | None:
    elements = []
    if page.state == OPEN:
        elements.append({"type": "button", "action_id": ACK_ACTION, "style": "primary", "value": str(page.id),
                         "text": {"type": "plain_text", "text": "Acknowledge"}})
    if page.state in (OPEN, ACKNOWLEDGED):
        elements.append({"type": "button", "action_id": RESOLVE_ACTION, "value": str(page.id),
                         "text": {"type": "plain_text", "text": "Resolve"}})
    if not elements:
        return None
    return {"type": "actions", "block_id": "page_actions", "elements": elements}


def render(services, page: Page, *, for_dm: bool = False) -> tuple[str, list[dict]]:
    """The page's text (the notification, with the mentions) and blocks, for its current state."""
    mentions = " ".join(mention(u) for u in page.notify_ids())
    reason = escape(page.reason) if page.reason else "_no reason given_"
    where = "the rollout thread" if page.rollout_id is not None else "the thread"
    if page.source_link:
        details = f"<{page.source_link}|Open {where}>"
    elif page.source_channel:
        details = f"In <#{page.source_channel}>"
    else:
        details = None
    icon = ":white_check_mark:" if page.state == RESOLVED else ":rotating_light:"
    headline = f"{icon} {page.title}"
    if for_dm:
        paged = f"You are on call for this page (also posted in <#{page.alert_channel}>)."
    else:
        paged = f"Paging {mentions}." if mentions else "Nobody is on call in the models file."
    body = f"*Reason:* {reason}" + (f"\n{details}" if details else "")
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{headline}\n{paged}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": line} for line in _state_lines(services, page)]},
    ]
    buttons = _buttons(page)
    if buttons:
        blocks.append(buttons)
    state = {OPEN: "", ACKNOWLEDGED: " (acknowledged)", RESOLVED: " (resolved)"}[page.state]
    text = f"{icon} {mentions + ' ' if mentions and not for_dm else ''}{page.title}{state}. Reason: {reason}"
    return text, blocks

