"""`/model cost [MODEL] [--days N]`: every model's monthly cost, largest first, with the total and the part spent on
candidates and baking variants, from the store in the ack; for one model, its cost now and its instance hours over
the period in the ack, then (after it) right-sizing from CloudWatch and the instance chart (a direct message, or
the thread of a mention: an ephemeral reply cannot carry a file)."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.cost import chart_data
from bot.cost import messages as text
from bot.cost import service as cost
from bot.slack.charts import ChartPostError, post_rendered
from bot.slack.command_line import UsageError
from bot.slack.text import escape
from handlers.commands.spec import Ack, Invocation, Subcommand

log = logging.getLogger(__name__)


def _days(inv: Invocation) -> int:
    try:
        return cost.parse_days(inv.line.options.get("days"))
    except ValueError as exc:
        raise UsageError(escape(str(exc)) + ".") from None


def _context(note: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": note[:2990]}]}


def _no_endpoint(inv: Invocation) -> dict:
    name = escape(inv.model.name)
    return {"text": f":information_source: *{name}* has no endpoint in the models file, so it has no hosting cost "
                    f"modelbot can see. Add `endpoint = \"...\"` to `[models.{name}]`."}


def quick_cost(inv: Invocation) -> Ack:
    """The ack: every model, or one model's numbers, from the store; right-sizing and the chart follow."""
    days = _days(inv)
    if inv.model is None:
        body, blocks = text.render_overview(cost.overview(inv.services, days))
        return Ack({"text": body, "blocks": blocks})
    if not inv.model.endpoint:
        return Ack(_no_endpoint(inv))
    body, blocks = text.render_detail(cost.detail(inv.services, inv.model, days), sized=False)
    return Ack({"text": body, "blocks": blocks + [_context(":hourglass_flowing_sand: Sizing the instances on "
                                                             "14 days of CloudWatch and drawing the chart…")]},
               follow_up=True)


def _destination(inv: Invocation) -> tuple[str, str | None, str]:
    if inv.thread_ts:
        return inv.channel_id, inv.thread_ts, "this thread"
    channel = inv.services.slack.conversations_open(users=inv.user_id)["channel"]["id"]
    return channel, None, "a direct message to you"


def _post_chart(inv: Invocation, d: cost.Detail) -> str:
    """Posts the chart; returns the line that says where it is, or why it is not there (never raises)."""
    try:
        rendered = chart_data.chart(inv.services, d)
        channel, thread_ts, where = _destination(inv)
        post_rendered(inv.services.slack, channel, thread_ts, rendered)
        return text.chart_note(where)
    except ChartPostError as exc:
        return f":warning: {escape(str(exc))}"
    except (SlackApiError, SlackClientError) as exc:
        return f":warning: chart not posted: Slack did not open a direct message with you ({escape(str(exc)[:120])})"
    except Exception as exc:
        log.exception("cost chart of %s failed", inv.model.name)
        return f":warning: chart not available: it could not be drawn ({type(exc).__name__}; logged)"


def run_cost(inv: Invocation) -> None:
    """After the ack (and for mentions): right-sizing and the chart, then the whole reply again."""
    days = _days(inv)
    if inv.model is None:
        body, blocks = text.render_overview(cost.overview(inv.services, days))
        inv.reply(text=body, blocks=blocks)
        return
    if not inv.model.endpoint:
        inv.reply(**_no_endpoint(inv))
        return
    d = cost.detail(inv.services, inv.model, days)
    cost.rightsize(inv.services, d)
    note = _post_chart(inv, d)
    body, blocks = text.render_detail(d, sized=True)
    inv.reply(text=f"{body}\n{note}", blocks=blocks + [_context(note)])


SUBCOMMANDS = [
    Subcommand(
        name="cost",
        usage="cost [<model>] [--days N]",
        summary="every model's monthly cost, largest first, with the total and what candidates and baking "
                "variants cost; one model: its instance hours over the last N days (default 30), a chart, "
                "and right-sizing",
        run=run_cost,
        model_arg=True,
        max_args=1,
        options=frozenset({"days"}),
        progress=lambda inv: (f"Looking up what *{escape(inv.model.name)}* costs…" if inv.model
                              else "Adding up what every model costs…"),
        quick=quick_cost,
    ),
]
