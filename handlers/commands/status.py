from __future__ import annotations

from bot import status
from handlers.commands.spec import Invocation, Subcommand


def run_status(inv: Invocation) -> None:
    registry = inv.services.registry
    models = [inv.model] if inv.model else [registry.models[n] for n in registry.names()]
    statuses = status.gather(inv.services, models, detail=inv.model is not None)
    text, blocks = status.render(statuses, detail=inv.model is not None)
    inv.reply(text=text, blocks=blocks)


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
