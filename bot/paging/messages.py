"""What a page says in Slack: the alert (in the alert channel or wherever it moved on to), the DM to the on-call,
the escalation, the buttons, the state lines, the PagerDuty summary and the refusal to act on a page.

Pure functions from a page row and plain data (the escalation time, the admins) to text and blocks; nothing here
reads the database or calls Slack. `text` carries everything the blocks say: it is the notification.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from bot.paging.tables import (
    ACKNOWLEDGED,
    ADMINS_DM,
    ALERT_CHANNEL,
    MODEL_CHANNEL,
    OPEN,
    RESOLVED,
    ROLLOUT_THREAD,
    Page,
)
from bot.slack.text import cut, escape, mention
from bot.store.base import as_utc

ACK_ACTION = "page_acknowledge"
RESOLVE_ACTION = "page_resolve"
# A user-typed reason is kept whole in the database and PagerDuty; in Slack it is cut to this.
REASON_CHARS = 2500

PLACE_NAMES = {ALERT_CHANNEL: "the alert channel", ROLLOUT_THREAD: "the rollout's thread",
               MODEL_CHANNEL: "the model's channel", ADMINS_DM: "a DM to the admins"}


def rollback_title(model_name: str, *, automatic: bool, actor: str | None) -> str:
    """The page title (mrkdwn) of a rollback: who or what rolled the model back."""
    if automatic:
        how = "automatically by the rollout controller"
    elif actor:
        how = f"by {mention(actor)}"
    else:
        how = "by hand"
    return f"*{escape(model_name)}* was rolled back {how}"


def when(value: datetime | None) -> str:
    """Shown in each reader's own time zone; the fallback is UTC."""
    value = as_utc(value)
    if value is None:
        return "at an unknown time"
    return f"<!date^{int(value.timestamp())}^{{date_short_pretty}} at {{time}}|{value:%Y-%m-%d %H:%M} UTC>"


# Slack's angle-bracket forms only: a mention, a channel, a special (<!here>, <!date^...>) or a link. Any
# other "<...>" is text someone typed (a reason is kept as typed).
_ANGLED = re.compile(r"<((?:[@#!]|https?://|mailto:)[^<>|]*)(?:\|([^<>]*))?>")
_PAIRED = re.compile(r"(?<![\w*_~])([*_~])(?=\S)(.+?)(?<=\S)\1(?![\w*_~])")


def _plain_link(match: re.Match) -> str:
    """One Slack angle-bracket form, as a person would write it in plain text."""
    target, label = match.group(1), match.group(2)
    if target[:2] in ("@U", "@W", "@B") or target[:2] == "#C" or target[:2] == "#G":
        return f"{target[0]}{label}" if label else target
    if target.startswith("!subteam^"):
        return label if label else "@" + target.split("^", 1)[1]
    if target.startswith("!date^"):
        return label or ""
    if target.startswith("!"):
        return label or "@" + target[1:]
    return f"{label} ({target})" if label and label != target else target


def plain_text(mrkdwn: str) -> str:
    """Slack mrkdwn as plain text (PagerDuty shows text as it is): no backticks or emphasis marks, mentions
    and channels by name, links as `text (url)`, Slack's escapes undone."""
    text = mrkdwn.replace("`", "")
    text = _ANGLED.sub(_plain_link, text)
    previous = None
    while previous != text:  # nested emphasis (*_x_*) comes off layer by layer
        previous, text = text, _PAIRED.sub(r"\2", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def plain_summary(page: Page) -> str:
    """A one-line summary without Slack markup, for PagerDuty."""
    title = plain_text(page.title)
    return f"{title}: {plain_text(page.reason)}" if page.reason else title


def state_lines(page: Page, *, escalation_minutes: float, admins: Iterable[str]) -> list[str]:
    """The page's state, one context line each: open (and escalated), acknowledged, resolved."""
    lines = []
    if page.state == OPEN:
        minutes = f"{escalation_minutes:g}"
        if page.escalated_at:
            named = " ".join(mention(u) for u in admins) or "nobody (no admins set)"
            lines.append(f":red_circle: *Open* since {when(page.created_at)}, not acknowledged: escalated to "
                         f"{named} {when(page.escalated_at)}.")
        else:
            lines.append(f":red_circle: *Open* since {when(page.created_at)}. Escalates to the admins if nobody "
                         f"acknowledges it within {minutes} minutes.")
    if page.acknowledged_at:
        lines.append(f":large_yellow_circle: *Acknowledged* by {mention(page.acknowledged_by)} "
                     f"{when(page.acknowledged_at)}.")
    if page.state == RESOLVED:
        who = mention(page.resolved_by) if page.resolved_by else "modelbot"
        lines.append(f":white_check_mark: *Resolved* by {who} {when(page.resolved_at)}.")
    return lines


def buttons(page: Page) -> dict | None:
    """Acknowledge (while open) and Resolve (until resolved); None when the page is resolved."""
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


def moved_on_note(refusals: str) -> str:
    """Why the alert is not in the alert channel: the places Slack refused it in.

    `refusals` holds one "place channel error" line per refused place.
    """
    refused = "; ".join(f"<#{line.split()[1]}> ({escape(line.split()[2])})"
                        for line in refusals.splitlines() if len(line.split()) >= 3)
    return f":warning: Posted here because Slack refused it in {refused}."


def render(page: Page, *, escalation_minutes: float, admins: Iterable[str], for_dm: bool = False,
           place: str | None = None) -> tuple[str, list[dict]]:
    """The page's text (the notification, with the mentions) and blocks, for its current state.

    `for_dm`: the DM to the on-call; otherwise the alert, posted in `place` (default: where it is now).
    """
    mentions = " ".join(mention(u) for u in page.notify_ids())
    reason = escape(cut(page.reason, REASON_CHARS)) if page.reason else "_no reason given_"
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
    place = place or (page.alert_place if page.alert_ts else ALERT_CHANNEL)
    if not for_dm and place != ALERT_CHANNEL and page.refusals:
        body += f"\n{moved_on_note(page.refusals)}"
    lines = state_lines(page, escalation_minutes=escalation_minutes, admins=admins)
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{headline}\n{paged}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": line} for line in lines]},
    ]
    actions = buttons(page)
    if actions:
        blocks.append(actions)
    state = {OPEN: "", ACKNOWLEDGED: " (acknowledged)", RESOLVED: " (resolved)"}[page.state]
    text = f"{icon} {mentions + ' ' if mentions and not for_dm else ''}{page.title}{state}. Reason: {reason}"
    return text, blocks


def escalation_text(escalation_minutes: float, who: Iterable[str]) -> str:
    """The escalation, in the alert's thread (or DMed to the admins): `who` are the on-call and the admins."""
    named = " ".join(mention(u) for u in who)
    return (f":rotating_light: *Escalated:* nobody has acknowledged this page in {escalation_minutes:g} minutes. "
            f"{named} please acknowledge or resolve it.")


def not_allowed_text(action: str, *, oncall: Iterable[str], model_name: str | None, owners: Iterable[str],
                     admins: Iterable[str], unlisted_group: str | None = None) -> str:
    """Why someone may not acknowledge or resolve a page: who may. `unlisted_group`: an on-call group whose
    members Slack did not list (so membership was not checked)."""
    who = [mention(u) for u in sorted(oncall)]
    owners, admins = list(owners), list(admins)
    if model_name and owners:
        who.append(f"the owners of *{escape(model_name)}* ({', '.join(mention(u) for u in owners)})")
    who.append("an admin" + (f" ({', '.join(mention(u) for u in admins)})" if admins else ""))
    problem = ""
    if unlisted_group:
        problem = (f" (Slack did not list the members of {mention(unlisted_group)}, so on-call membership was "
                   f"not checked)")
    return f"Only the on-call {', '.join(who)} may {action} this page.{problem}"
