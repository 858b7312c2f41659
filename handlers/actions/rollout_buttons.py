"""Rollout buttons: the confirmed Roll back / Force promotion of the slash commands, and Continue / Roll back
on a paused rollout's message. Rights are checked again on every click: the button may have been shown to
someone else, or rights may have changed since."""

from __future__ import annotations

import json
import logging

from bot import audit
from bot.rollouts import service as rollouts
from bot.rollouts import messages as text
from bot.errors import ExternalError
from bot.rights import NotAllowed, require_change
from bot.rollouts import tables as store

log = logging.getLogger(__name__)


def _value(body: dict) -> dict:
    try:
        return json.loads(body["actions"][0].get("value") or "{}")
    except (KeyError, IndexError, ValueError):
        return {}


def _model_of(services, value: dict):
    if value.get("model"):
        return services.registry.get(value["model"]), value.get("rollout_id")
    rollout_id = value.get("rollout_id")
    if rollout_id is None:
        return None, None
    with services.store.session() as s:
        r = store.get(s, int(rollout_id))
    return (services.registry.get(r.model) if r else None), rollout_id


def _handle(ack, body, context, respond, *, action: str, words: str, act, replace: bool) -> None:
    ack()
    services = context["services"]
    user_id = body.get("user", {}).get("id", "")
    value = _value(body)
    model, rollout_id = _model_of(services, value)

    def answer(message: str) -> None:
        # The confirm prompt is the clicker's own ephemeral message: it is replaced by the outcome. A paused
        # rollout's message is shared: the service edits it, and the clicker hears back privately.
        respond(text=message, response_type="ephemeral", replace_original=replace)

    if model is None:
        answer(":warning: That rollout's model is no longer in the models file; nothing was changed.")
        return
    try:
        require_change(services.registry, user_id, model, words)
    except NotAllowed as exc:
        audit.record(services.store, user_id=user_id, action=action, model=model.name, outcome="denied",
                     via="button", rollout_id=rollout_id)
        respond(text=f":no_entry: {exc}", response_type="ephemeral", replace_original=False)
        return
    reason = value.get("reason")
    try:
        outcome = act(services, model, user_id, value)
    except rollouts.RolloutRefused as exc:
        audit.record(services.store, user_id=user_id, action=action, model=model.name, outcome="failed",
                     reason=reason, via="button", detail=str(exc))
        answer(f":warning: {exc}")
        return
    except ExternalError as exc:
        audit.record(services.store, user_id=user_id, action=action, model=model.name, outcome="failed",
                     reason=reason, via="button", detail=str(exc))
        answer(f":warning: {exc}")
        return
    audit.record(services.store, user_id=user_id, action=action, model=model.name,
                 outcome="ok" if outcome.changed else "failed", reason=reason, via="button",
                 rollout_id=outcome.rollout_id)
    answer(outcome.text)


def on_confirm_rollback(ack, body, context, respond):
    _handle(ack, body, context, respond, action="rollback", words="roll back", replace=True,
            act=lambda services, model, user, value: rollouts.rollback(
                services, model, user_id=user, reason=value.get("reason"), rollout_id=value.get("rollout_id")))


def on_confirm_force(ack, body, context, respond):
    _handle(ack, body, context, respond, action="promote_force", words="promote", replace=True,
            act=lambda services, model, user, value: rollouts.force_promote(
                services, model, user_id=user, reason=value.get("reason"), variant=value.get("variant")))


def on_continue(ack, body, context, respond):
    _handle(ack, body, context, respond, action="resume", words="resume rollouts", replace=False,
            act=lambda services, model, user, value: _for_rollout(
                services, model, value, lambda: rollouts.resume(services, model, user_id=user)))


def on_paused_rollback(ack, body, context, respond):
    _handle(ack, body, context, respond, action="rollback", words="roll back", replace=False,
            act=lambda services, model, user, value: rollouts.rollback(
                services, model, user_id=user, reason="rolled back from the paused rollout's buttons",
                rollout_id=value.get("rollout_id")))


def _for_rollout(services, model, value: dict, act):
    """A Continue click acts only on the rollout whose message it came from, and only while it is paused."""
    with services.store.session() as s:
        active = store.active_for(s, model.name)
    if active is None or active.id != value.get("rollout_id"):
        raise rollouts.RolloutRefused("That rollout is over; nothing was changed.")
    return act()


def register(app) -> None:
    app.action(text.CONFIRM_ROLLBACK_ACTION)(on_confirm_rollback)
    app.action(text.CONFIRM_FORCE_ACTION)(on_confirm_force)
    app.action(text.CONTINUE_ACTION)(on_continue)
    app.action(text.PAUSED_ROLLBACK_ACTION)(on_paused_rollback)
