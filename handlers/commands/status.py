"""`/model status`: the list from the store in the ack; one model from the snapshot, its charts after the ack.

    /model status                  first page of every model, attention first, and the counts
    /model status --page 2         the next page
    /model status fraud-*          models whose name matches the glob
    /model status churn            one model from the snapshot at once; its charts follow
    /model status churn --live     the same, read from SageMaker now (after the ack)

Before the worker's first endpoint snapshot (a fresh install) the status says so and reads SageMaker live,
once for that command, after the ack.
"""

from __future__ import annotations

import logging

from bot.chart_loading import load as load_chart_module
from bot.slack.command_line import UsageError
from bot.slack.text import code
from bot.status import board as status_board
from bot.status import messages as status_messages
from bot.status import service as status
from bot.status import snapshot
from handlers.commands.spec import Ack, Invocation, Subcommand

log = logging.getLogger(__name__)


def _context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}


def _page(inv: Invocation) -> int:
    raw = inv.line.options.get("page")
    if raw is None:
        return 1
    if inv.model is not None:
        raise UsageError("`--page` pages the list of models; one model fits on one page.")
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"--page needs a page number (1, 2, ...), not {code(raw)}.")
    return int(raw)


def _pattern(inv: Invocation) -> str | None:
    return inv.args[0] if inv.model is None and inv.args else None


def _interval(inv: Invocation) -> float:
    return float(inv.services.settings.MODELBOT_JOB_INTERVAL_SECONDS)


def _names(inv: Invocation) -> list[str]:
    return status_board.select_names(inv.services.registry.names(), _pattern(inv))


def _board(inv: Invocation, names: list[str]) -> status_board.Board:
    with inv.services.store.session() as s:
        return status_board.build(s, names, interval=_interval(inv), page=_page(inv))


def quick_status(inv: Invocation) -> Ack:
    """The ack: the list, or one model, from the store; never an AWS call."""
    _page(inv)  # a bad --page is a usage error before anything is read
    live = "live" in inv.line.flags
    if inv.model is None:
        if live:
            raise UsageError("`--live` reads one model now: `/model status <model> --live`.")
        names = _names(inv)
        board = _board(inv, names)
        if board.worker is None and names:
            return Ack({"text": f"Looking up {len(names)} models live in SageMaker: the worker (`python -m jobs`) "
                                "has not taken its endpoint snapshot yet, so this status reads them now, once."},
                       follow_up=True)
        return Ack(status_messages.render_board(board, pattern=_pattern(inv), interval=_interval(inv)))
    if live or snapshot.worker_pass(inv.services) is None:
        why = "" if live else " (the worker has not taken its endpoint snapshot yet)"
        return Ack({"text": f"Looking up *{inv.model.name}* live in SageMaker{why}…"}, follow_up=True)
    text, blocks = status_messages.render_statuses([status.from_snapshot(inv.services, inv.model)], detail=True)
    return Ack({"text": text, "blocks": blocks + [_context(":hourglass_flowing_sand: Drawing the charts…")]},
               follow_up=True)


def run_status(inv: Invocation) -> None:
    """After the ack (and for mentions): a live read when asked for or when the worker never ran, then charts."""
    services = inv.services
    if inv.model is None:
        names = _names(inv)
        notes = []
        if snapshot.worker_pass(services) is None and names:
            snapshot.take(services, [services.registry.models[n] for n in names], source="live")
            notes.append("Read live from SageMaker just now; start the worker (`python -m jobs`) to keep a "
                         "snapshot, so status answers at once.")
        inv.reply(**status_messages.render_board(_board(inv, names), pattern=_pattern(inv), interval=_interval(inv),
                                        notes=notes))
        return
    live = "live" in inv.line.flags or snapshot.worker_pass(services) is None
    if live:
        snapshot.take(services, [inv.model], source="live")
    statuses = [status.from_snapshot(services, inv.model)]
    text, blocks = status_messages.render_statuses(statuses, detail=True)
    if inv.thread_ts is not None:
        _in_thread(inv, statuses[0], text, blocks)
        return
    if live:  # from the snapshot, the ack already showed this
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
    """The status charts (bot/status/charts.py); whatever goes wrong there, the status reply stands."""
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
        usage="status [<model>] [--live] [--page N]",
        summary="every model, what needs attention first (from the worker's endpoint snapshot); a glob "
                "instead of a model filters (`/model status fraud-*`); one model in detail, `--live` reads "
                "SageMaker now",
        run=run_status,
        model_arg=True,
        glob_arg=True,
        max_args=1,
        flags=frozenset({"live"}),
        options=frozenset({"page"}),
        progress=_progress,
        quick=quick_status,
    ),
]


def warm(services) -> None:
    """Run the ack's status path once at start (statement compile, first connection, lazy imports), so the
    first `/model status` after a deploy acks as fast as the tenth. Whatever fails here fails again, and is
    reported, in the first command."""
    try:
        names = services.registry.names()
        with services.store.session() as s:
            board = status_board.build(s, names, interval=float(services.settings.MODELBOT_JOB_INTERVAL_SECONDS))
        status_messages.render_board(board, pattern=None, interval=30.0)
        if names:
            status_messages.render_statuses([status.from_snapshot(services, services.registry.models[names[0]])], detail=True)
    except Exception:
        log.exception("the status path could not be warmed at start")
