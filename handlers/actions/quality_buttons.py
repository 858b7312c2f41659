"""The Retrain button on a decay message. Slack shows its confirmation dialog before the click reaches here; the
rights are those of `/model retrain` (owners and admins), checked again on the click, since the message is seen by
the whole channel. The click is acked at once and its work (an Airflow call) goes to the bounded listener pool;
the clicker hears back privately, the decay message's thread says who started which run."""

from __future__ import annotations

import json
import logging

from bot import audit
from bot.errors import ExternalError
from bot.quality import messages as text
from bot.quality import service as quality
from bot.rights import NotAllowed, require_change
from bot.slack.text import MESSAGE_TEXT, cut

log = logging.getLogger(__name__)

BUSY = ":hourglass: modelbot is busy, try again in a minute; nothing was started."


def _value(body: dict) -> dict:
    try:
        value = json.loads(body["actions"][0].get("value") or "{}")
    except (KeyError, IndexError, TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _episode_id(value: dict) -> int | None:
    found = value.get("episode")
    if isinstance(found, bool) or not isinstance(found, int) or not 0 < found < 2**31:
        return None  # ids are SQL integers: a forged one reads as "no such decay", not as a database error
    return found


def on_retrain(ack, body, context, respond):
    ack()
    services = context["services"]

    def answer(message: str) -> None:
        respond(text=cut(message, MESSAGE_TEXT), response_type="ephemeral", replace_original=False)

    if not services.listener_pool.submit(retrain_click, services, body, answer):
        log.warning("quality retrain click refused: the listener pool is full")
        answer(BUSY)


def retrain_click(services, body: dict, answer) -> None:
    user_id = (body.get("user") or {}).get("id", "")
    value = _value(body)
    episode_id = _episode_id(value)
    name = value.get("model") if isinstance(value.get("model"), str) else None
    model = services.registry.get(name) if name else None
    if episode_id is None or model is None:
        answer(":warning: That decay's model is no longer in the models file; nothing was started.")
        return
    try:
        require_change(services.registry, user_id, model, "retrain")
    except NotAllowed as exc:
        audit.record(services.store, user_id=user_id, action="retrain", model=model.name, outcome="denied",
                     via="quality button", episode=episode_id)
        answer(f":no_entry: {exc}")
        return
    try:
        outcome = quality.retrain_from_decay(services, model, episode_id, user_id)
    except ExternalError as exc:
        audit.record(services.store, user_id=user_id, action="retrain", model=model.name, outcome="failed",
                     reason=str(exc), via="quality button", episode=episode_id)
        answer(f":warning: {exc}")
        return
    if outcome.started:
        audit.record(services.store, user_id=user_id, action="retrain", model=model.name, outcome="ok",
                     via="quality button", episode=episode_id, run_id=outcome.run_id)
    answer(outcome.answer)


def register(app) -> None:
    app.action(text.RETRAIN_ACTION)(on_retrain)
