"""Rollout buttons: the confirmed Roll back / Force promotion of the slash commands, and Continue / Roll back
on a paused rollout's message. Rights are checked again on every click: the button may have been shown to
someone else, or rights may have changed since. A prompt acts only while what it showed still holds (the same
rollout, the same candidate, not expired: bot/rollouts/prompts.py).

Each listener acks at once and hands the work to the services' bounded listener pool, so a transition never
holds one of Bolt's threads (slash-command acks wait for those); when the pool is full the clicker hears
"busy, try again in a minute" and nothing changes."""

from __future__ import annotations

import json
import logging

from bot import audit
from bot.errors import ExternalError
from bot.rights import NotAllowed, require_change
from bot.rollouts import messages as text
from bot.rollouts import prompts
from bot.rollouts import service as rollouts
from bot.rollouts import tables as store
from bot.slack.text import MESSAGE_TEXT, cut

log = logging.getLogger(__name__)

BUSY = ":hourglass: modelbot is busy, try again in a minute; nothing was changed."


def _value(body: dict) -> dict:
    try:
        value = json.loads(body["actions"][0].get("value") or "{}")
    except (KeyError, IndexError, TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _rollout_id(value: dict) -> int | None:
    rollout_id = value.get("rollout_id")
    if isinstance(rollout_id, bool) or not isinstance(rollout_id, int):
        return None
    # Ids are SQL integers: a forged 10**12 must read as "no such rollout", not as a database error.
    if not 0 < rollout_id < 2**31:
        return None
    return rollout_id


def _model_of(services, value: dict):
    name = value.get("model")
    if isinstance(name, str) and name:
        return services.registry.get(name), _rollout_id(value)
    rollout_id = _rollout_id(value)
    if rollout_id is None:
        return None, None
    with services.store.session() as s:
        r = store.get(s, rollout_id)
    return (services.registry.get(r.model) if r else None), rollout_id


def _reason(value: dict) -> str | None:
    reason = value.get("reason")
    return reason if isinstance(reason, str) else None


def _handle(ack, body, context, respond, *, action: str, words: str, act, replace: bool, candidate_now=None) -> None:
    ack()
    services = context["services"]

    def answer(message: str, *, replace_original: bool = replace) -> None:
        # The confirm prompt is the clicker's own ephemeral message: it is replaced by the outcome. A paused
        # rollout's message is shared: the service edits it, and the clicker hears back privately.
        respond(text=cut(message, MESSAGE_TEXT), response_type="ephemeral", replace_original=replace_original)

    if not services.listener_pool.submit(_work, services, body, answer, action=action, words=words, act=act,
                                         candidate_now=candidate_now):
        user_id = (body.get("user") or {}).get("id", "")
        log.warning("%s click by %s refused: the listener pool is full", action, user_id)
        answer(BUSY, replace_original=False)


def _work(services, body: dict, answer, *, action: str, words: str, act, candidate_now) -> None:
    user_id = (body.get("user") or {}).get("id", "")
    value = _value(body)
    model, rollout_id = _model_of(services, value)
    if model is None:
        answer(":warning: That rollout's model is no longer in the models file; nothing was changed.")
        return
    try:
        require_change(services.registry, user_id, model, words)
    except NotAllowed as exc:
        audit.record(services.store, user_id=user_id, action=action, model=model.name, outcome="denied",
                     via="button", rollout_id=rollout_id)
        answer(f":no_entry: {exc}", replace_original=False)
        return
    reason = _reason(value)
    try:
        now_candidate = candidate_now(services, model, value) if candidate_now else None
        stale = prompts.stale_reason(services, model.name, value, candidate_now=now_candidate)
        if stale:
            audit.record(services.store, user_id=user_id, action=action, model=model.name, outcome="stale",
                         reason=reason, via="button", rollout_id=rollout_id, detail=stale)
            answer(f":warning: {stale.rstrip('.')}; nothing was changed. Run the command again to see the "
                   "current state.")
            return
        outcome = act(services, model, user_id, value, {"action": action, "via": "button"})
    except (rollouts.RolloutRefused, ExternalError) as exc:
        audit.record(services.store, user_id=user_id, action=action, model=model.name, outcome="failed",
                     reason=reason, via="button", detail=str(exc))
        answer(f":warning: {exc}")
        return
    if not outcome.audited:  # a change is audited in its own transaction; this records what changed nothing
        audit.record(services.store, user_id=user_id, action=action, model=model.name,
                     outcome="ok" if outcome.changed else "failed", reason=reason, via="button",
                     rollout_id=outcome.rollout_id)
    answer(outcome.text)


def _force_candidate_now(services, model, value: dict) -> str | None:
    """With no rollout running, the candidate a forced promotion would take today, read from the endpoint."""
    if value.get("active"):
        return None
    variant = value.get("variant") if isinstance(value.get("variant"), str) else None
    _state, _stable, candidate = rollouts.pick_variants(services, model, variant)
    return candidate


def on_confirm_rollback(ack, body, context, respond):
    _handle(ack, body, context, respond, action="rollback", words="roll back", replace=True,
            act=lambda services, model, user, value, audited: rollouts.rollback(
                services, model, user_id=user, reason=_reason(value), rollout_id=_rollout_id(value), audited=audited))


def on_confirm_force(ack, body, context, respond):
    _handle(ack, body, context, respond, action="promote_force", words="promote", replace=True,
            candidate_now=_force_candidate_now,
            act=lambda services, model, user, value, audited: rollouts.force_promote(
                services, model, user_id=user, reason=_reason(value),
                variant=value.get("candidate") if isinstance(value.get("candidate"), str) else None, audited=audited))


def on_continue(ack, body, context, respond):
    _handle(ack, body, context, respond, action="resume", words="resume rollouts", replace=False,
            act=lambda services, model, user, value, audited: _for_rollout(
                services, model, value, lambda: rollouts.resume(services, model, user_id=user, audited=audited)))


def on_paused_rollback(ack, body, context, respond):
    _handle(ack, body, context, respond, action="rollback", words="roll back", replace=False,
            act=lambda services, model, user, value, audited: rollouts.rollback(
                services, model, user_id=user, reason="rolled back from the paused rollout's buttons",
                rollout_id=_rollout_id(value), audited=audited))


def _for_rollout(services, model, value: dict, act):
    """A Continue click acts only on the rollout whose message it came from, and only while it is paused."""
    with services.store.session() as s:
        active = store.active_for(s, model.name)
    if active is None or active.id != _rollout_id(value):
        raise rollouts.RolloutRefused("That rollout is over; nothing was changed.")
    return act()


def register(app) -> None:
    app.action(text.CONFIRM_ROLLBACK_ACTION)(on_confirm_rollback)
    app.action(text.CONFIRM_FORCE_ACTION)(on_confirm_force)
    app.action(text.CONTINUE_ACTION)(on_continue)
    app.action(text.PAUSED_ROLLBACK_ACTION)(on_paused_rollback)
