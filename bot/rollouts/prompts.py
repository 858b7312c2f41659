"""Confirmation prompts bound to what they showed.

A force-promotion, rollback or continue button is a question about one moment: this rollout (or, when none
was running, the model's latest one), this candidate variant. Its value carries that moment and an expiry; a
click acts only while the moment still holds. Otherwise an old prompt could, say, put a candidate that was
rolled back since on 100% of traffic with no analysis.

The Continue / Roll back buttons of a paused rollout's own message are a question about the pause itself: they
stay good for as long as that rollout is paused with that candidate (a weekend, say), not 15 minutes.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bot.rollouts import tables as store
from bot.rollouts.states import RolloutState
from bot.slack.text import BUTTON_VALUE, code, cut

PROMPT_SECONDS = 15 * 60
# The reason travels in the button's value (Slack allows 2,000 characters for it all).
REASON_CHARS = 1000


def bind(*, model: str, candidate: str | None, shown: Any = None, latest_id: int | None = None,
         now: float | None = None, **extra: Any) -> dict:
    """A button value for a prompt about `model`: `shown` is the unfinished rollout the prompt is about (None
    when none was running; then `latest_id` is the model's latest rollout, or None when it never had one)."""
    now = time.time() if now is None else now
    value = {
        "model": model,
        "rollout_id": shown.id if shown is not None else latest_id,
        "active": shown is not None,
        "candidate": candidate,
        "expires": int(now + PROMPT_SECONDS),
    }
    for key, item in extra.items():
        value[key] = cut(item, REASON_CHARS) if isinstance(item, str) else item
    # The whole JSON must fit Slack's 2,000 characters (non-ASCII text grows when JSON-escaped): a cut JSON
    # value would not parse, and the click would act on nothing.
    while len(json.dumps(value)) > BUTTON_VALUE and value.get("reason"):
        value["reason"] = cut(value["reason"], max(1, len(value["reason"]) // 2))
    return value


def bind_rollout(r, now: float | None = None) -> dict:
    """The value of a button on a rollout's own message (Continue / Roll back on a paused rollout): good while
    that rollout stays paused."""
    return bind(model=r.model, candidate=r.candidate_variant, shown=r, now=now, while_paused=True)


def stale_reason(services, model_name: str, value: dict, *, now: float | None = None,
                 candidate_now: str | None = None) -> str | None:
    """Why a click on a prompt with this value must not act (None: it may). `candidate_now` is the candidate
    the action would use today when no rollout is running (the caller reads it from the endpoint)."""
    now = time.time() if now is None else now
    expires = value.get("expires")
    if not isinstance(expires, (int, float)) or isinstance(expires, bool):
        return "This prompt is out of date (it was made before prompts carried what they showed)."
    with services.store.session() as s:
        active = store.active_for(s, model_name)
        latest = store.latest_for(s, model_name)
    shown_id = value.get("rollout_id")
    if value.get("while_paused") is True and value.get("active"):
        if active is None or active.id != shown_id or active.state != RolloutState.PAUSED:
            return "This prompt is out of date: the rollout it was shown for is no longer paused."
    elif now > expires:
        return f"This prompt is out of date: prompts are good for {PROMPT_SECONDS // 60} minutes."
    if value.get("active"):
        if active is None or active.id != shown_id:
            return "This prompt is out of date: the rollout it was shown for has ended."
        current = active.candidate_variant
    else:
        if active is not None or (latest.id if latest is not None else None) != shown_id:
            return "This prompt is out of date: a rollout of this model started or ended since it was shown."
        current = candidate_now if candidate_now is not None else (latest.candidate_variant if latest else None)
    if value.get("candidate") is not None and current is not None and current != value.get("candidate"):
        return (f"This prompt is out of date: it was about {code(str(value.get('candidate')))}, and the candidate "
                f"is now {code(current)}.")
    return None
