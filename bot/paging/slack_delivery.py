"""A page's Slack part: the alert (in the alert channel, or wherever it moves on to), the DM to a user on call,
the escalation, and the updates of those messages after a click. PagerDuty is delivered apart
(bot/paging/pagerduty_events.py): it never waits behind a Slack call.

Never lost, never sent twice. Each delivery is recorded only after Slack accepted it; whatever is still owed is
sent by the next caller or by the page_escalation job. A claim on the row (claim_holder/claim_until, on the
database's clock) keeps two processes from delivering the same page at the same time. The one window left: a
crash after Slack accepted a post and before the database recorded it; after the claim expires
(CLAIM_SECONDS) that post is sent again.

A page always reaches someone: when Slack refuses the alert for good (archived channel, bot removed, ...), the
alert moves on to the next place: the rollout's thread (broadcast, mentioning the on-call), then the model's
channel, then a DM to the admins. A refused place is not tried again. Transient failures (429, 5xx, timeouts)
back off, doubling up to BACKOFF_CAP_SECONDS; owed deliveries are taken in next_attempt_at order, so a page
that keeps failing never holds back another.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Callable

from slack_sdk.errors import SlackApiError
from sqlalchemy import select, update

from bot.errors import ExternalError
from bot.paging import claims, messages
from bot.paging.messages import PLACE_NAMES
from bot.paging.tables import ALERT_CHANNEL, ALERT_PLACES, MODEL_CHANNEL, OPEN, ROLLOUT_THREAD, Page
from bot.slack.client import TRANSIENT, classify, error_code
from bot.store.base import utcnow
from bot.store.foundation import Thread, database_now, insert_ignore

log = logging.getLogger(__name__)

# Longer than the slowest delivery pass (Slack's 10 s timeout with its retries).
CLAIM_SECONDS = 120
# Slack answers that mean the message to update is gone for good: retrying would never succeed.
_GONE = {"message_not_found", "cant_update_message", "channel_not_found", "is_archived", "msg_too_long"}
# A page that still owes something is tried again after BACKOFF_SECONDS, doubled per failed pass, at most this.
BACKOFF_SECONDS = 15.0
BACKOFF_CAP_SECONDS = 300.0


class DeliveryFailed(ExternalError):
    """One delivery of a page was not accepted; it stays owed and is retried."""

    def __init__(self, message: str, *, kind: str = TRANSIENT, slack_error: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.slack_error = slack_error


def backoff_seconds(attempts: int) -> float:
    """How long a page that failed `attempts` passes in a row waits before the next one."""
    return min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2 ** max(0, min(attempts, 20) - 1))


def deliver(services, page_id: int, *, wait: float = 0.0) -> bool:
    """Sends whatever of the page's Slack part is owed. True when nothing of it is owed afterwards.

    Delivery failures are recorded on the page (last_error) and logged, not raised: the page stays owed and
    the page_escalation job retries it. Returns False at once (after `wait`) when another process holds the
    page: that process sends what is owed, including changes made while it works.
    """
    def passes() -> bool:
        # Another pass when someone changed the page while we delivered (a click during the post).
        for _ in range(3):
            settled, failed = _deliver_pass(services, page_id)
            if settled or failed:
                return settled
        return False

    return bool(claims.holding(services, page_id, claims.SLACK, seconds=CLAIM_SECONDS, wait=wait, work=passes))


def get_page(services, page_id: int) -> Page | None:
    with services.store.session() as s:
        return s.get(Page, page_id)


def _deliver_pass(services, page_id: int) -> tuple[bool, bool]:
    """One try at every owed Slack delivery; each is independent (a failed DM does not hold back the alert's
    update)."""
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
                              next_attempt_at=database_now(s) + timedelta(seconds=backoff_seconds(attempts))))
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
        # No alert channel in the models file and no thread to page in: the next places are tried.
        return (page.alert_channel, None) if page.alert_channel and page.alert_channel not in refused else None
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


# In this order: the alert first (the DM and escalation refer to it).
_STEPS = (
    _step_alert,
    _step_dm,
    _step_escalation,
    _step_sync_alert,
    _step_sync_dm,
)


# ---------------------------------------------------------------------------------------------------------
# The page message (its wording is bot/paging/messages.py)


def _render(services, page: Page, *, for_dm: bool = False, place: str | None = None) -> tuple[str, list[dict]]:
    """The page's text and blocks for its current state, with the escalation time and admins of the settings."""
    return messages.render(page, escalation_minutes=services.settings.MODELBOT_PAGE_ESCALATION_MINUTES,
                           admins=services.registry.defaults.admins, for_dm=for_dm, place=place)
