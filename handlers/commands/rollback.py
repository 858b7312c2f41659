"""/model rollback <model> [reason]: asks for confirmation; the confirm button (rollout_buttons) acts."""

from __future__ import annotations

from bot import audit
from bot.rollouts import service as rollouts
from bot.rollouts import messages as text
from bot.rollouts import prompts
from bot.slack.text import escape, fit_message
from handlers.commands.spec import Invocation, Subcommand


def run_rollback(inv: Invocation) -> None:
    services, model = inv.services, inv.model
    reason = " ".join(inv.args) or None
    target, description = rollouts.rollback_target(services, model)
    if target is None:
        # Nothing to confirm: the reply says there is nothing to roll back to, and what the endpoint serves.
        outcome = rollouts.rollback(services, model, user_id=inv.user_id, reason=reason)
        audit.record(services.store, user_id=inv.user_id, action="rollback", model=model.name, outcome="failed",
                     reason=reason, detail="nothing to roll back to")
        inv.reply(text=outcome.text)
        return
    audit.record(services.store, user_id=inv.user_id, action="rollback", model=model.name, outcome="requested",
                 reason=reason, rollout_id=target.id)
    question = f":warning: *Roll back {escape(model.name)}?* {description}"
    if reason:
        question += f"\n*Reason:* {escape(reason)}"
    plain = description.replace("`", "").replace("*", "")
    blocks = text.confirm_blocks(
        question, action_id=text.CONFIRM_ROLLBACK_ACTION, button="Roll back",
        # Bound to what it shows: this rollout and its candidate, for 15 minutes (bot/rollouts/prompts.py).
        value=prompts.bind(model=model.name, candidate=target.candidate_variant,
                           shown=target if target.active_model else None, latest_id=target.id, reason=reason),
        dialog_title=f"Roll back {model.name}?", dialog_text=plain,
    )
    # A long reason must not make Slack refuse the prompt: cut to Slack's limits with "…".
    inv.reply(**fit_message({"text": question, "blocks": blocks}))


SUBCOMMANDS = [
    Subcommand(
        name="rollback",
        usage="rollback <model> [reason]",
        summary="all traffic back to the stable variant (or the previous endpoint config); pages on-call",
        run=run_rollback,
        model_arg=True,
        min_args=1,
        mutating=True,
        action="roll back",
        progress=lambda inv: f"Checking what rolling back *{inv.model.name}* would do…",
    ),
]
