"""A subcommand's chart, posted where the person who asked can see it: an ephemeral reply cannot carry a file, so
in the thread of a mention, else in a direct message. The reply then says where it is, or why it is not there;
a chart never breaks the reply it belongs to."""

from __future__ import annotations

import logging
from typing import Callable

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.slack.charts import ChartPostError, post_rendered
from bot.slack.text import escape
from handlers.commands.spec import Invocation

log = logging.getLogger(__name__)


def destination(inv: Invocation) -> tuple[str, str | None, str]:
    """(channel, thread_ts, where in words)."""
    if inv.thread_ts:
        return inv.channel_id, inv.thread_ts, "this thread"
    channel = inv.services.slack.conversations_open(users=inv.user_id)["channel"]["id"]
    return channel, None, "a direct message to you"


def post_chart(inv: Invocation, draw: Callable[[], object], what: str, *, title: str = "chart") -> str:
    """Draws (draw() -> RenderedChart) and posts the chart; returns the line for the reply (never raises).
    `what` names it in the log, `title` in the reply ("The instance chart is in ...")."""
    try:
        chart = draw()
        channel, thread_ts, where = destination(inv)
        post_rendered(inv.services.slack, channel, thread_ts, chart)
        return f":bar_chart: The {title} is in {where}."
    except ChartPostError as exc:
        return f":warning: {escape(str(exc))}"
    except (SlackApiError, SlackClientError) as exc:
        return f":warning: chart not posted: Slack did not open a direct message with you ({escape(str(exc)[:120])})"
    except Exception as exc:
        log.exception("%s chart failed", what)
        return f":warning: chart not available: it could not be drawn ({type(exc).__name__}; logged)"
