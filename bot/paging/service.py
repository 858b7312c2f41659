"""Paging a human: the alert-channel post, the DM to a user on-call, PagerDuty, escalation, acknowledge/resolve.

Never lost, never sent twice. The page row is written first (one per dedup key: a second call for the same
rollout finds it); each delivery is recorded only after Slack or PagerDuty accepted it; whatever is still
owed is sent by the next caller or by the page_escalation job. A claim on the row (claim_holder/claim_until)
keeps two processes from delivering the same page at the same time.

The one window left: a crash after Slack accepted a post and before the database recorded it. After the
claim expires (CLAIM_SECONDS) that post is sent again; everything else is exactly once.

A page always reaches someone: when Slack refuses the alert for good (archived channel, bot removed, ...), the
alert moves on to the next place: the rollout's thread (broadcast, mentioning the on-call), then the model's
channel, then a DM to the admins. A refused place is not tried again. Transient failures (429, 5xx, timeouts)
back off, doubling up to BACKOFF_CAP_SECONDS; owed deliveries are taken in next_attempt_at order, so a page
that keeps failing never holds back another.
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
from sqlalchemy import func, or_, select, update

from bot import audit
from bot.errors import ExternalError
from bot.integrations.pagerduty import PagerDuty, PagerDutyError
from bot.paging import messages
# The button action ids are re-exported for the button listener (handlers/actions/page_buttons.py) and tests.
from bot.paging.messages import ACK_ACTION, PLACE_NAMES, RESOLVE_ACTION  # noqa: F401
from bot.rights import NotAllowed
from bot.paging.tables import (
    ACKNOWLEDGED,
    ALERT_CHANNEL,
    ALERT_PLACES,
    MODEL_CHANNEL,
    OPEN,
    RESOLVED,
    ROLLOUT_THREAD,
    Page,
)
from bot.slack.client import CONTENT, PERMANENT, TRANSIENT, classify, error_code
from bot.store.base import as_utc, utcnow
from bot.store.foundation import Thread, insert_ignore

log = logging.getLogger(__name__)

KIND_ROLLBACK = "rollback"
# Longer than the slowest delivery pass (Slack's 10 s timeout with its retries, PagerDuty's retries).
CLAIM_SECONDS = 120
# A click waits this long for a worker that is delivering the same page, so the message updates at once.
CLICK_CLAIM_WAIT_SECONDS = 5.0
# Slack answers that mean the message to update is gone for good: retrying would never succeed.
_GONE = {"message_not_found", "cant_update_message", "channel_not_found", "is_archived", "msg_too_long"}
# A page that still owes something is tried again after BACKOFF_SECONDS, doubled per failed pass, at most this.
BACKOFF_SECONDS = 15.0
BACKOFF_CAP_SECONDS = 300.0
# /healthz says degraded while a page has owed a delivery for longer than this.
OWED_TOO_LONG = timedelta(minutes=5)


class DeliveryFailed(ExternalError):
    """One delivery of a page was not accepted; it stays owed and is retried."""

    def __init__(self, message: str, *, kind: str = TRANSIENT, slack_error: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.slack_error = slack_error


def backoff_seconds(attempts: int) -> float:
    """How long a page that failed `attempts` passes in a row waits before the next one."""
    return min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2 ** max(0, min(attempts, 20) - 1))


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
    page_id = open_page(
        services,
        kind=KIND_ROLLBACK,
        dedup_key=rollout_dedup_key(rollout_id),
        model_name=model_name,
        rollout_id=rollout_id,
        title=messages.rollback_title(model_name, automatic=automatic, actor=actor),
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
        "next_attempt_at": utcnow(),
        "owed_since": utcnow(),
        "alert_place": ALERT_CHANNEL,
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
            .values(state=ACKNOWLEDGED, acknowledged_by=user_id, acknowledged_at=now, version=Page.version + 1,
                    **_owed_now(now))
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
            .values(state=RESOLVED, resolved_by=user_id, resolved_at=now, version=Page.version + 1,
                    **_owed_now(now))
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
                .values(escalated_at=now, version=Page.version + 1, **_owed_now(now))
            ).rowcount == 1
        if won:
            claimed.append(page_id)
    return claimed


def _owed_now(now: datetime) -> dict:
    """Column values for a change that makes the page owe a delivery: due at once, owed since the first such."""
    return {"next_attempt_at": now, "owed_since": func.coalesce(Page.owed_since, now)}


def owed_pages(services, limit: int = 100, now: datetime | None = None) -> list[int]:
    """Pages that owe a delivery now (due by next_attempt_at, earliest first) and that nobody is delivering."""
    now = now or utcnow()
    due = func.coalesce(Page.next_attempt_at, Page.created_at)
    with services.store.session() as s:
        return list(s.scalars(
            select(Page.id)
            .where(Page.settled_version < Page.version)
            .where(or_(Page.claim_until.is_(None), Page.claim_until < now))
            .where(due <= now)
            .order_by(due, Page.id)
            .limit(limit)
        ))


def owed_too_long(services, now: datetime | None = None) -> list[dict]:
    """Pages that have owed a delivery for more than OWED_TOO_LONG: what /healthz names (no raw error texts)."""
    now = now or utcnow()
    since = func.coalesce(Page.owed_since, Page.created_at)
    with services.store.session() as s:
        pages = list(s.scalars(
            select(Page).where(Page.settled_version < Page.version, since <= now - OWED_TOO_LONG)
            .order_by(since).limit(20)
        ))
    report = []
    for page in pages:
        owed_since = as_utc(page.owed_since or page.created_at)
        report.append({
            "page": page.dedup_key,
            "model": page.model,
            "owed_minutes": round((now - owed_since).total_seconds() / 60, 1),
            "owes": owed_parts(page),
            "attempts": page.attempts,
            "alert_place": page.alert_place,
            "errors": sorted(set(_error_codes(page.last_error))),
        })
    return report


def owed_parts(page: Page) -> list[str]:
    """What of the page is not delivered yet, by name."""
    parts = []
    if not page.alert_ts:
        parts.append("alert")
    if page.dm_user and not page.dm_ts and not page.dm_refused:
        parts.append("dm")
    if page.pagerduty and not page.pd_triggered_at:
        parts.append("pagerduty_trigger")
    if page.escalated_at and not page.escalation_ts and page.state == OPEN:
        parts.append("escalation")
    if page.alert_ts and page.alert_version < page.version:
        parts.append("alert_update")
    if page.dm_ts and page.dm_version < page.version:
        parts.append("dm_update")
    if page.pagerduty and page.acknowledged_at and not page.pd_acknowledged_at and not page.resolved_at:
        parts.append("pagerduty_acknowledge")
    if page.pagerduty and page.resolved_at and page.pd_triggered_at and not page.pd_resolved_at:
        parts.append("pagerduty_resolve")
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
            attempts = (s.scalar(select(Page.attempts).where(Page.id == page_id)) or 0) + 1
            s.execute(update(Page).where(Page.id == page_id)
                      .values(attempts=attempts, last_error="; ".join(failures)[:4000],
                              next_attempt_at=utcnow() + timedelta(seconds=backoff_seconds(attempts))))
            return False, True
        settled = s.execute(
            update(Page).where(Page.id == page_id, Page.version == version)
            .values(settled_version=version, last_error=None, attempts=0, owed_since=None, next_attempt_at=None)
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
        error = error_code(exc)
        status = getattr(exc.response, "status_code", None)
        detail = error or "no error code"
        if status and status != 200:
            detail = f"HTTP {status}, {detail}"
        kind = classify(exc)
        later = "it will be retried" if kind == TRANSIENT else "Slack refuses it for good"
        raise DeliveryFailed(f"Slack did not {what} [slack:{detail}]; {later}", kind=kind,
                             slack_error=error) from None
    except OSError as exc:  # URLError, timeouts, refused connections
        raise DeliveryFailed(f"Slack did not {what} [slack:unreachable:{type(exc).__name__}]; it will be "
                             f"retried ({exc})") from None


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


def _refused_channels(page: Page) -> set[str]:
    return {line.split()[1] for line in (page.refusals or "").splitlines() if len(line.split()) >= 2}


def _place_target(services, page: Page, place: str) -> tuple[str, str | None] | None:
    """(channel, thread_ts) where `place` is for this page, or None when the page has no such place."""
    refused = _refused_channels(page)
    if place == ALERT_CHANNEL:
        return (page.alert_channel, None) if page.alert_channel not in refused else None
    if place == ROLLOUT_THREAD:
        if page.source_channel and page.source_ts and page.source_channel not in refused:
            return page.source_channel, page.source_ts
        return None
    if place == MODEL_CHANNEL:
        model = services.registry.get(page.model) if page.model else None
        channel = getattr(model, "channel", None)
        return (channel, None) if channel and channel not in refused else None
    admins = list(services.registry.defaults.admins)
    if not admins:
        return None
    opened = _slack(f"open a DM with the admins for the page {page.dedup_key}",
                    lambda: services.slack.conversations_open(users=",".join(admins)))
    channel = opened["channel"]["id"]
    return (channel, None) if channel not in refused else None


def _move_on(services, page: Page, place: str, channel: str | None, error: str | None) -> str | None:
    """Records that `place` refused the page for good; returns the next place (None: none left)."""
    index = ALERT_PLACES.index(place)
    following = ALERT_PLACES[index + 1] if index + 1 < len(ALERT_PLACES) else None
    refusals = page.refusals or ""
    if channel:
        refusals += f"{place} {channel} {error or 'refused'}\n"
    _record(services, page.id, alert_place=following or ALERT_CHANNEL, refusals=refusals)
    page.alert_place, page.refusals = following or ALERT_CHANNEL, refusals
    return following


def _step_alert(services, page: Page) -> None:
    if page.alert_ts:
        return
    _ensure_source_link(services, page)
    place = page.alert_place if page.alert_place in ALERT_PLACES else ALERT_CHANNEL
    while True:
        try:
            target = _place_target(services, page, place)
        except DeliveryFailed as exc:
            if exc.kind == TRANSIENT:
                raise
            target, refused_error = None, exc.slack_error
            log.warning("page %s: %s refused: %s", page.dedup_key, PLACE_NAMES[place], exc)
            place = _move_on(services, page, place, None, refused_error)
            if place is None:
                break
            continue
        if target is None:
            place = _move_on(services, page, place, None, None)
            if place is None:
                break
            continue
        channel, thread_ts = target
        text, blocks = _render(services, page, place=place)
        try:
            response = _slack(
                f"post the page {page.dedup_key} in {PLACE_NAMES[place]} (<#{channel}>)",
                lambda: services.slack.chat_postMessage(channel=channel, text=text, blocks=blocks,
                                                        thread_ts=thread_ts, reply_broadcast=bool(thread_ts),
                                                        unfurl_links=False),
            )
        except DeliveryFailed as exc:
            if exc.kind == TRANSIENT:
                raise
            log.warning("page %s: %s; moving on to the next place", page.dedup_key, exc)
            place = _move_on(services, page, place, channel, exc.slack_error)
            if place is None:
                break
            continue
        _alert_posted(services, page, response, channel, thread_ts)
        return
    # Every place refused: start again from the alert channel after the backoff (a channel may be unarchived).
    _record(services, page.id, alert_place=ALERT_CHANNEL, refusals=None)
    raise DeliveryFailed(f"no place took the page {page.dedup_key} [slack:every_place_refused]: "
                         f"{(page.refusals or '').strip()}; it will be retried")


def _alert_posted(services, page: Page, response, channel: str, thread_ts: str | None) -> None:
    with services.store.session() as s:
        s.execute(update(Page).where(Page.id == page.id)
                  .values(alert_ts=response["ts"], alert_channel=response.get("channel") or channel,
                          alert_thread_ts=thread_ts, alert_version=page.version))
        if page.model and not thread_ts:
            # A mention inside the page's thread (`@modelbot status`) then acts on the page's model.
            insert_ignore(s, Thread.__table__,
                          {"kind": "page", "key": page.dedup_key, "model": page.model,
                           "channel": response.get("channel") or channel, "ts": response["ts"],
                           "created_at": utcnow()},
                          ["kind", "key"])


def _step_dm(services, page: Page) -> None:
    if not page.dm_user or page.dm_ts or page.dm_refused:
        return
    try:
        channel = page.dm_channel
        if not channel:
            opened = _slack(f"open a DM with {page.dm_user} for the page {page.dedup_key}",
                            lambda: services.slack.conversations_open(users=page.dm_user))
            channel = opened["channel"]["id"]
            _record(services, page.id, dm_channel=channel)
        _ensure_source_link(services, page)
        text, blocks = _render(services, page, for_dm=True)
        response = _slack(
            f"send the page {page.dedup_key} to {page.dm_user} by DM",
            lambda: services.slack.chat_postMessage(channel=channel, text=text, blocks=blocks, unfurl_links=False),
        )
    except DeliveryFailed as exc:
        if exc.kind == TRANSIENT:
            raise
        # The person cannot be reached by DM (deactivated, not in the workspace): the alert still reaches them.
        log.warning("page %s: the DM to %s is given up: %s", page.dedup_key, page.dm_user, exc)
        _record(services, page.id, dm_refused=(exc.slack_error or "refused")[:64])
        return
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
            summary=messages.plain_summary(page),
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
    text = messages.escalation_text(services.settings.MODELBOT_PAGE_ESCALATION_MINUTES,
                                    [*page.notify_ids(), *services.registry.defaults.admins])
    try:
        response = _slack(
            f"post the escalation of the page {page.dedup_key} in <#{page.alert_channel}>",
            lambda: services.slack.chat_postMessage(channel=page.alert_channel,
                                                    thread_ts=page.alert_thread_ts or page.alert_ts, text=text,
                                                    reply_broadcast=True),
        )
    except DeliveryFailed as exc:
        if exc.kind == TRANSIENT:
            raise
        # The page's channel refuses posts since the page went out: the admins are told directly instead.
        log.warning("page %s: escalation refused in <#%s>: %s; DMing the admins", page.dedup_key,
                    page.alert_channel, exc)
        admins = list(services.registry.defaults.admins)
        if not admins:
            _record(services, page.id, escalation_ts="-")
            return
        opened = _slack(f"open a DM with the admins for the escalation of {page.dedup_key}",
                        lambda: services.slack.conversations_open(users=",".join(admins)))
        response = _slack(f"DM the escalation of the page {page.dedup_key} to the admins",
                          lambda: services.slack.chat_postMessage(channel=opened["channel"]["id"], text=text))
    _record(services, page.id, escalation_ts=response["ts"])


def _sync(services, page: Page, *, channel: str | None, ts: str | None, seen: int, column: str, dm: bool) -> None:
    if not ts or seen >= page.version:
        return
    text, blocks = _render(services, page, for_dm=dm)
    try:
        _slack(f"update the page {page.dedup_key} message in <#{channel}>",
               lambda: services.slack.chat_update(channel=channel, ts=ts, text=text, blocks=blocks))
    except DeliveryFailed as exc:
        if exc.slack_error not in _GONE and exc.kind == TRANSIENT:
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
# The page message (its wording is bot/paging/messages.py)


def _render(services, page: Page, *, for_dm: bool = False, place: str | None = None) -> tuple[str, list[dict]]:
    """The page's text and blocks for its current state, with the escalation time and admins of the settings."""
    return messages.render(page, escalation_minutes=services.settings.MODELBOT_PAGE_ESCALATION_MINUTES,
                           admins=services.registry.defaults.admins, for_dm=for_dm, place=place)
