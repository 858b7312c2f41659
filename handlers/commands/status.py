from __future__ import annotations

import logging

from bot.status import service as status
from bot.chart_loading import load as load_chart_module
from handlers.commands.spec import Invocation, Subcommand

log = logging.getLogger(__name__)


def _context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}


def run_status(inv: Invocation) -> None:
    registry = inv.services.registry
    models = [inv.model] if inv.model else [registry.models[n] for n in registry.names()]
    statuses = status.gather(inv.services, models, detail=inv.model is not None)
    text, blocks = status.render(statuses, detail=inv.model is not None)
    if inv.model is None:
        inv.reply(text=text, blocks=blocks)
        return
    if inv.thread_ts is not None:
        _in_thread(inv, statuses[0], text, blocks)
        return
    inv.reply(text=text, blocks=blocks + [_context(":hourglass_flowing_sand: Drawing the charts…")])
    lines = _charts(inv, statuses[0], post=True)[1]
    note = "\n".join(lines)
    inv.reply(text=f"{text}\n{note}", blocks=blocks + [_context(note)])


def _in_thread(inv: Invocation, model_status: status.ModelStatus, text: str, blocks: list) -> None:
    """A mention in one of modelbot's threads: one reply (what is missing included), then the charts below it."""
    outcome, lines = _charts(inv, model_status, post=False)
    if lines:
        text, blocks = f"{text}\n" + "\n".join(lines), blocks + [_context("\n".join(lines))]
    inv.reply(text=text, blocks=blocks)
    if outcome is None or not outcome.charts:
        return
    status_charts = load_chart_module("bot.status.charts")

    told = len(outcome.problems)
    try:
        status_charts.post(inv.services, outcome)
    except Exception:
        log.exception("status charts of %s failed", inv.model.name)
        return
    late = outcome.lines()[1 if outcome.posted else 0:][told:]
    if late:  # Slack refused an upload after the reply went out
        inv.reply(text="\n".join(late))


def _charts(inv: Invocation, model_status: status.ModelStatus, *, post: bool):
    """The status charts (bot/status_charts.py); whatever goes wrong there, the status reply stands."""
    try:
        status_charts = load_chart_module("bot.status.charts")

        here = (inv.channel_id, inv.thread_ts) if inv.thread_ts else None
        outcome = status_charts.prepare(inv.services, inv.model, model_status.endpoint, model_status.problem,
                                        user_id=inv.user_id, here=here)
        if post:
            status_charts.post(inv.services, outcome)
        return outcome, outcome.lines()
    except Exception as exc:
        log.exception("status charts of %s failed", inv.model.name)
        return None, [f":warning: chart not available: {type(exc).__name__} (logged)"]


def _progress(inv: Invocation) -> str:
    if inv.model:
        return f"Looking up *{inv.model.name}*…"
    return f"Looking up {len(inv.services.registry.models)} models…"


SUBCOMMANDS = [
    Subcommand(
        name="status",
        usage="status [<model>]",
        summary="every model's endpoint, traffic split, rollout and last run; or one model in detail",
        run=run_status,
        model_arg=True,
        max_args=1,
        progress=_progress,
    ),
]
