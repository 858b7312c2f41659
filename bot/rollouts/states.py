"""The rollout state machine: its states, the events that move it, and the one table of allowed moves.

    pending -> progressing(step i) -> ... -> baking -> promoted
    (pending, progressing, baking) -> paused -> (back where it was)
    (any unfinished state, or promoted) -> rolled_back;  (unfinished) -> aborted

The plan functions (bot/rollouts/plans.py) ask `next_state` for every move they plan, so a move that is not in
TRANSITIONS cannot be planned: it raises IllegalTransition. The values are the strings stored in
rollouts.state, which other readers (status, the board) compare with.
"""

from __future__ import annotations

from enum import StrEnum


class RolloutState(StrEnum):
    PENDING = "pending"  # recorded; its thread or its first step is not in place yet
    PROGRESSING = "progressing"  # the candidate serves the current step's share and is judged every tick
    PAUSED = "paused"  # held by a human (or after an inconclusive step); still judged, for a rollback only
    BAKING = "baking"  # the candidate serves 100%; the old variant stays at 0% for bake_minutes
    PROMOTED = "promoted"  # finished: the candidate is production, the old variant retired
    ROLLED_BACK = "rolled_back"  # finished: all traffic back on the stable variant (or the earlier config)
    ABORTED = "aborted"  # finished without a verdict: replaced by a newer deploy, or its endpoint is gone


class Event(StrEnum):
    START = "start"  # the first step's weights
    SHIFT = "shift"  # the next step, after the judgement showed the candidate is not worse by more than margin
    BAKE = "bake"  # the step at 100% was reached
    FORCED = "forced"  # /model promote --force: 100% now, no analysis
    PROMOTED = "promoted"  # baked long enough: the old variant is retired
    ROLLBACK = "rollback"  # shown worse, or asked for by a human
    PAUSE = "pause"  # a human holds it, or a step stayed inconclusive for max_step_minutes
    RESUME = "resume"  # back where it was paused
    ABORT = "abort"  # superseded by a newer deploy, or the endpoint or a variant vanished


ACTIVE_STATES = (RolloutState.PENDING, RolloutState.PROGRESSING, RolloutState.PAUSED, RolloutState.BAKING)
FINAL_STATES = (RolloutState.PROMOTED, RolloutState.ROLLED_BACK, RolloutState.ABORTED)

# Where a resume goes: the state the rollout was in when it was paused (rollouts.resume_state).
PAUSED_FROM = "the state it was paused in"

_S, _E = RolloutState, Event
TRANSITIONS: dict[tuple[RolloutState, Event], RolloutState | str] = {
    (_S.PENDING, _E.START): _S.PROGRESSING,
    (_S.PENDING, _E.BAKE): _S.BAKING,  # a first step of 100%
    (_S.PENDING, _E.FORCED): _S.BAKING,
    (_S.PENDING, _E.PAUSE): _S.PAUSED,
    (_S.PENDING, _E.ROLLBACK): _S.ROLLED_BACK,
    (_S.PENDING, _E.ABORT): _S.ABORTED,
    (_S.PROGRESSING, _E.SHIFT): _S.PROGRESSING,
    (_S.PROGRESSING, _E.BAKE): _S.BAKING,
    (_S.PROGRESSING, _E.FORCED): _S.BAKING,
    (_S.PROGRESSING, _E.PAUSE): _S.PAUSED,
    (_S.PROGRESSING, _E.ROLLBACK): _S.ROLLED_BACK,
    (_S.PROGRESSING, _E.ABORT): _S.ABORTED,
    (_S.PAUSED, _E.RESUME): PAUSED_FROM,
    (_S.PAUSED, _E.FORCED): _S.BAKING,
    (_S.PAUSED, _E.ROLLBACK): _S.ROLLED_BACK,
    (_S.PAUSED, _E.ABORT): _S.ABORTED,
    (_S.BAKING, _E.PROMOTED): _S.PROMOTED,
    (_S.BAKING, _E.PAUSE): _S.PAUSED,
    (_S.BAKING, _E.ROLLBACK): _S.ROLLED_BACK,
    (_S.BAKING, _E.ABORT): _S.ABORTED,
    # A finished rollout can still be rolled back: the endpoint goes back to its earlier config.
    (_S.PROMOTED, _E.ROLLBACK): _S.ROLLED_BACK,
}


class IllegalTransition(ValueError):
    """A plan asked for a move the state machine does not have."""


def allows(state: str, event: Event) -> bool:
    try:
        return (RolloutState(state), event) in TRANSITIONS
    except ValueError:
        return False


def next_state(state: str, event: Event, *, paused_from: str | None = None) -> RolloutState:
    """The state `event` moves a rollout in `state` to; IllegalTransition when the table has no such move."""
    try:
        target = TRANSITIONS[(RolloutState(state), event)]
    except (KeyError, ValueError):
        raise IllegalTransition(f"a rollout that is {state} cannot {event.value}") from None
    if target == PAUSED_FROM:
        try:
            # Only an unfinished state a pause is allowed from can be returned to.
            back = RolloutState(paused_from or RolloutState.PROGRESSING)
        except ValueError:
            raise IllegalTransition(f"a paused rollout cannot resume to {paused_from!r}") from None
        if (back, Event.PAUSE) not in TRANSITIONS:
            raise IllegalTransition(f"a paused rollout cannot resume to {back.value}")
        return back
    return target
