"""Delivers what the Slack outbox owes (bot/slack/outbox.py): rollout messages, edits and charts queued by
transitions whose traffic part is done. Each row waits out its own back-off, so a Slack outage costs one
attempt per row every few minutes at most, and never holds up the rollout controller. (A rollback's page is not
an outbox row: it is written with the rollback and delivered by pagerduty_delivery and page_escalation.)"""

from __future__ import annotations

from bot.rollouts import notices
from bot.slack import outbox

NAME = "outbox_delivery"

# The kinds of rows this job can deliver are registered by the modules that queue them (PAGE: rows an older
# version queued, delivered by opening the page).
REGISTERED = (notices.EDIT, notices.CHART, notices.PAGE)


def run_once(services) -> str:
    return outbox.deliver_due(services).summary()
