"""/model promote <model> [--variant NAME] [--force] [reason]: start or resume a gradual rollout, or force it."""

from __future__ import annotations

from bot import audit
from bot.rollouts import service as rollouts
from bot.rollouts import messages as text
from bot.rollouts import prompts
from bot.slack.text import escape, fit_message
from bot.rollouts import tables as store
from handlers.commands.spec import Invocation, Subcommand


def run_promote(inv: Invocation) -> None:
    services, model = inv.services, inv.model
    reason = " ".join(inv.args) or None
    variant = inv.line.options.get("variant")
    if "force" in inv.line.flags:
        _confirm_force(inv, reason, variant)
        return
    try:
        # Audited in the transaction that starts (or resumes) the rollout; what changed nothing is recorded here.
        outcome = rollouts.start_from_slack(services, model, user_id=inv.user_id, variant=variant, reason=reason,
                                            audited={"action": "promote", "variant": variant})
    except rollouts.RolloutRefused as exc:
        audit.record(services.store, user_id=inv.user_id, action="promote", model=model.name, outcome="failed",
                     reason=reason, detail=str(exc))
        inv.reply(text=f":warning: {exc}")
        return
    if not outcome.audited:
        audit.record(services.store, user_id=inv.user_id, action="promote", model=model.name,
                     outcome="ok" if outcome.changed else "failed", reason=reason, rollout_id=outcome.rollout_id,
                     variant=variant)
    inv.reply(text=outcome.text)


def _confirm_force(inv: Invocation, reason: str | None, variant: str | None) -> None:
    services, model = inv.services, inv.model
    with services.store.session() as s:
        active = store.active_for(s, model.name)
        latest = store.latest_for(s, model.name)
    if active is not None:
        if active.state == "baking":
            inv.reply(text=f"*{escape(model.name)}* is already at 100% (baking); nothing to force.")
            return
        endpoint, stable, candidate = active.endpoint, active.stable_variant, active.candidate_variant
    else:
        try:
            state, stable, candidate = rollouts.pick_variants(services, model, variant)
        except rollouts.RolloutRefused as exc:
            inv.reply(text=f":warning: {exc}")
            return
        endpoint = state.name
    audit.record(services.store, user_id=inv.user_id, action="promote_force", model=model.name,
                 outcome="requested", reason=reason, candidate=candidate)
    description = (f"`{escape(candidate)}` takes 100% of `{escape(endpoint)}` now, without analysis; "
                   f"`{escape(stable)}` stays at 0% for instant rollback. Announced in the thread and the alert channel.")
    question = f":warning: *Force the promotion of {escape(model.name)}?* {description}"
    if reason:
        question += f"\n*Reason:* {escape(reason)}"
    blocks = text.confirm_blocks(
        question, action_id=text.CONFIRM_FORCE_ACTION, button="Force promotion",
        # Bound to what it shows: this rollout (or the model's latest when none runs), this candidate, 15 minutes.
        value=prompts.bind(model=model.name, candidate=candidate, shown=active,
                           latest_id=latest.id if latest is not None else None, reason=reason, variant=variant),
        dialog_title=f"Force {model.name} to 100%?", dialog_text=description.replace("`", ""),
    )
    # A long reason must not make Slack refuse the prompt: cut to Slack's limits with "…".
    inv.reply(**fit_message({"text": question, "blocks": blocks}))


SUBCOMMANDS = [
    Subcommand(
        name="promote",
        usage="promote <model> [--variant NAME] [--force] [reason]",
        summary="start or resume a gradual rollout of the candidate; --force: 100% now, analysis skipped",
        run=run_promote,
        model_arg=True,
        min_args=1,
        flags=frozenset({"force"}),
        options=frozenset({"variant"}),
        mutating=True,
        action="promote",
        progress=lambda inv: f"Looking at *{inv.model.name}*'s endpoint…",
    ),
]
