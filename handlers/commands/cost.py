"""`/model cost [MODEL] [--days N]`: every model's monthly cost, largest first, with the total and the part spent on
candidates and baking variants, from the store in the ack; for one model, its cost now and its instance hours over
the period in the ack, then (after it) right-sizing from CloudWatch and the instance chart (a direct message, or
the thread of a mention: an ephemeral reply cannot carry a file)."""

from __future__ import annotations

from bot.cost import chart_data
from bot.cost import messages as text
from bot.cost import service as cost
from bot.slack.command_line import days_option
from bot.slack.text import escape
from handlers.commands import chart_reply
from handlers.commands.spec import Ack, Invocation, Subcommand


def _days(inv: Invocation) -> int:
    return days_option(inv.line.options.get("days"), default=cost.DEFAULT_DAYS, maximum=cost.MAX_DAYS)


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
    note = chart_reply.post_chart(inv, lambda: chart_data.chart(inv.services, d), f"cost of {inv.model.name}",
                              title="instance chart")
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
