from __future__ import annotations

from bot.slack.text import escape
from handlers.commands import model as router
from handlers.commands.spec import Invocation, Subcommand


def help_text() -> str:
    lines = ["*modelbot* runs your models' lifecycle from Slack. Usage:"]
    for spec in router.subcommands().values():
        lines.append(f"• `/model {escape(spec.usage)}` — {spec.summary}")
    lines.append("Mention me in one of my threads (`@modelbot status`, `@modelbot rollback`) to act on its model.")
    return "\n".join(lines)


def run_help(inv: Invocation) -> dict:
    return {"text": help_text()}


SUBCOMMANDS = [
    Subcommand(name="help", usage="help", summary="this message", run=run_help, max_args=0, progress=None),
]
