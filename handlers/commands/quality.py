"""`/model quality <model> [--days N]`: the realized metric per day and variant, the reference, labels per day and
what is missing, from the store in the ack; the chart follows (a direct message, or the thread of a mention: an
ephemeral reply cannot carry a file)."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.quality import chart_data
from bot.quality import messages as text
from bot.quality import service as quality
from bot.slack.charts import ChartPostError, post_rendered
from bot.slack.command_line import UsageError
from bot.slack.text import escape
from handlers.commands.spec import Ack, Invocation, Subcommand

log = logging.getLogger(__name__)


def _days(inv: Invocation) -> int:
    try:
        return quality.parse_days(inv.line.options.get("days"))
    except ValueError as exc:
        raise UsageError(escape(str(exc)) + ".") from None


def _not_measured(inv: Invocation) -> dict:
    name = escape(inv.model.name)
    return {"text": f":information_source: *{name}* is not measured: the models file has no "
                    f"`[models.{name}.quality]` table. Add one with `labels = \"s3://bucket/prefix/\"` (Model "
                    "Monitor's ground-truth JSON Lines) and `tolerance`; the endpoint must capture its "
                    "predictions (data capture). See docs/quality.md."}


def _context(note: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": note[:2990]}]}


def quick_quality(inv: Invocation) -> Ack:
    """The ack: the numbers from the store; the chart follows after it."""
    days = _days(inv)
    if inv.model.quality is None:
        return Ack(_not_measured(inv))
    body, blocks = text.render_report(quality.report(inv.services, inv.model, days))
    return Ack({"text": body, "blocks": blocks + [_context(":hourglass_flowing_sand: Drawing the chart…")]},
               follow_up=True)


def _destination(inv: Invocation) -> tuple[str, str | None, str]:
    if inv.thread_ts:
        return inv.channel_id, inv.thread_ts, "this thread"
    channel = inv.services.slack.conversations_open(users=inv.user_id)["channel"]["id"]
    return channel, None, "a direct message to you"


def _post_chart(inv: Invocation, days: int) -> str:
    """Posts the chart; returns the line that says where it is, or why it is not there (never raises)."""
    try:
        chart = chart_data.chart(inv.services, inv.model.name, inv.model, days=days)
        channel, thread_ts, where = _destination(inv)
        post_rendered(inv.services.slack, channel, thread_ts, chart)
        return text.chart_note(where)
    except ChartPostError as exc:
        return f":warning: {escape(str(exc))}"
    except (SlackApiError, SlackClientError) as exc:
        return f":warning: chart not posted: Slack did not open a direct message with you ({escape(str(exc)[:120])})"
    except Exception as exc:
        log.exception("quality chart of %s failed", inv.model.name)
        return f":warning: chart not available: it could not be drawn ({type(exc).__name__}; logged)"


def run_quality(inv: Invocation) -> None:
    """After the ack (and for mentions): the chart, then the numbers again with where the chart is."""
    days = _days(inv)
    if inv.model.quality is None:
        inv.reply(**_not_measured(inv))
        return
    note = _post_chart(inv, days)
    body, blocks = text.render_report(quality.report(inv.services, inv.model, days))
    inv.reply(text=f"{body}\n{note}", blocks=blocks + [_context(note)])


SUBCOMMANDS = [
    Subcommand(
        name="quality",
        usage="quality <model> [--days N]",
        summary="the model's realized metric per day and variant (captured predictions joined with labels), "
                "its reference, labels per day, what is missing, and a chart",
        run=run_quality,
        model_arg=True,
        min_args=1,
        max_args=1,
        options=frozenset({"days"}),
        progress=lambda inv: f"Looking up the quality of *{escape(inv.model.name)}*…",
        quick=quick_quality,
    ),
]
