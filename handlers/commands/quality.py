"""`/model quality <model> [--days N]`: the realized metric per day and variant, the reference, labels per day and
what is missing, from the store in the ack; the chart follows (a direct message, or the thread of a mention: an
ephemeral reply cannot carry a file)."""

from __future__ import annotations

from bot.quality import chart_data
from bot.quality import messages as text
from bot.quality import service as quality
from bot.slack.command_line import days_option
from bot.slack.text import escape
from handlers.commands import chart_reply
from handlers.commands.spec import Ack, Invocation, Subcommand


def _days(inv: Invocation) -> int:
    return days_option(inv.line.options.get("days"), default=quality.DEFAULT_DAYS, maximum=quality.MAX_DAYS)


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


def run_quality(inv: Invocation) -> None:
    """After the ack (and for mentions): the chart, then the numbers again with where the chart is."""
    days = _days(inv)
    if inv.model.quality is None:
        inv.reply(**_not_measured(inv))
        return
    note = chart_reply.post_chart(inv, lambda: chart_data.chart(inv.services, inv.model.name, inv.model, days=days),
                                  f"quality of {inv.model.name}")
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
