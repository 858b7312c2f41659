"""/model pause <model> [reason] and /model resume <model>: hold a rollout where it is, and continue it."""

from __future__ import annotations

from bot import audit
from bot.rollouts import service as rollouts
from handlers.commands.spec import Invocation, Subcommand


def _act(inv: Invocation, action: str) -> None:
    services, model = inv.services, inv.model
    reason = " ".join(inv.args) or None
    try:
        # A change is audited in its own transaction; what changed nothing is recorded here.
        if action == "pause":
            outcome = rollouts.pause(services, model, user_id=inv.user_id, reason=reason, audited={"action": action})
        else:
            outcome = rollouts.resume(services, model, user_id=inv.user_id, reason=reason, audited={"action": action})
    except rollouts.RolloutRefused as exc:
        audit.record(services.store, user_id=inv.user_id, action=action, model=model.name, outcome="failed",
                     reason=reason, detail=str(exc))
        inv.reply(text=f":warning: {exc}")
        return
    if not outcome.audited:
        audit.record(services.store, user_id=inv.user_id, action=action, model=model.name,
                     outcome="ok" if outcome.changed else "failed", reason=reason, rollout_id=outcome.rollout_id)
    inv.reply(text=outcome.text)


SUBCOMMANDS = [
    Subcommand(
        name="pause",
        usage="pause <model> [reason]",
        summary="hold a rollout at its current traffic split",
        run=lambda inv: _act(inv, "pause"),
        model_arg=True,
        min_args=1,
        mutating=True,
        action="pause rollouts",
        progress=lambda inv: f"Pausing *{inv.model.name}*…",
    ),
    Subcommand(
        name="resume",
        usage="resume <model>",
        summary="continue a paused rollout",
        run=lambda inv: _act(inv, "resume"),
        model_arg=True,
        min_args=1,
        max_args=1,
        mutating=True,
        action="resume rollouts",
        progress=lambda inv: f"Resuming *{inv.model.name}*…",
    ),
]
