"""The Acknowledge / Resolve buttons on a page (in the alert channel and in the on-call's DM).

Each click is acked at once and its work handed to the services' bounded listener pool (full: "busy")."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError

from bot import audit
from bot.paging import service as pager
from bot.rights import NotAllowed
from bot.slack.text import mention
from bot.paging.tables import RESOLVED

log = logging.getLogger(__name__)


def register(app) -> None:
    app.action(pager.ACK_ACTION)(on_acknowledge)
    app.action(pager.RESOLVE_ACTION)(on_resolve)


def on_acknowledge(ack, body, context, action):
    ack()
    _hand_off(body, context, action, verb="acknowledge")


def on_resolve(ack, body, context, action):
    ack()
    _hand_off(body, context, action, verb="resolve")


def _hand_off(body, context, action, *, verb: str) -> None:
    services = context["services"]
    if not services.listener_pool.submit(_click, body, services, action, verb=verb):
        _teller(services, body)(":hourglass: modelbot is busy, try again in a minute; nothing was changed.")


def _teller(services, body):
    user_id = (body.get("user") or {}).get("id", "")
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")

    def tell(text: str) -> None:
        try:
            services.slack.chat_postEphemeral(channel=channel, user=user_id, text=text)
        except (SlackApiError, OSError) as exc:
            log.warning("page button: Slack did not show %s the note %r: %s", user_id, text, exc)

    return tell


def _click(body, services, action, *, verb: str) -> None:
    user_id = (body.get("user") or {}).get("id", "")
    tell = _teller(services, body)
    try:
        page_id = int(str(action.get("value") or ""))
        if not 0 < page_id < 2**31:
            raise ValueError(page_id)
    except ValueError:
        tell(":warning: This button does not name a page; nothing was changed.")
        return
    page = pager.get_page(services, page_id)
    if page is None:
        tell(":warning: This page is no longer in modelbot's database; nothing was changed.")
        return
    try:
        pager.require_page_rights(services, user_id, page, verb)
    except NotAllowed as exc:
        audit.record(services.store, user_id=user_id, action=f"page_{verb}", model=page.model, outcome="denied",
                     page=page.dedup_key)
        tell(f":no_entry: {exc}")
        return
    changed = pager.acknowledge(services, page_id, user_id) if verb == "acknowledge" \
        else pager.resolve(services, page_id, user_id)
    if changed:
        return
    # Someone else was quicker; the message already shows it (or will, once Slack takes the update).
    page = pager.get_page(services, page_id)
    if page.state == RESOLVED:
        who = mention(page.resolved_by) if page.resolved_by else "modelbot"
        tell(f"This page was already resolved by {who}.")
    else:
        tell(f"This page was already acknowledged by {mention(page.acknowledged_by)}.")
