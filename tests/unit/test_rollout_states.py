"""Every state x event against the one transition table: the allowed moves go where the table says, the rest
raise, and the plan functions can only plan moves the table has."""

from __future__ import annotations

import itertools

import pytest

from bot.rollouts.states import (
    ACTIVE_STATES,
    FINAL_STATES,
    PAUSED_FROM,
    TRANSITIONS,
    Event,
    IllegalTransition,
    RolloutState,
    allows,
    next_state,
)

S, E = RolloutState, Event

# The whole machine, written out once more by hand: a change to the table must change this too.
EXPECTED = {
    S.PENDING: {E.START: S.PROGRESSING, E.BAKE: S.BAKING, E.FORCED: S.BAKING, E.PAUSE: S.PAUSED,
                E.ROLLBACK: S.ROLLED_BACK, E.ABORT: S.ABORTED},
    S.PROGRESSING: {E.SHIFT: S.PROGRESSING, E.BAKE: S.BAKING, E.FORCED: S.BAKING, E.PAUSE: S.PAUSED,
                    E.ROLLBACK: S.ROLLED_BACK, E.ABORT: S.ABORTED},
    S.PAUSED: {E.RESUME: PAUSED_FROM, E.FORCED: S.BAKING, E.ROLLBACK: S.ROLLED_BACK, E.ABORT: S.ABORTED},
    S.BAKING: {E.PROMOTED: S.PROMOTED, E.PAUSE: S.PAUSED, E.ROLLBACK: S.ROLLED_BACK, E.ABORT: S.ABORTED},
    S.PROMOTED: {E.ROLLBACK: S.ROLLED_BACK},
    S.ROLLED_BACK: {},
    S.ABORTED: {},
}


def test_the_stored_strings_are_unchanged():
    assert [s.value for s in RolloutState] == ["pending", "progressing", "paused", "baking", "promoted",
                                               "rolled_back", "aborted"]
    assert set(ACTIVE_STATES) | set(FINAL_STATES) == set(RolloutState)
    assert RolloutState.PAUSED == "paused" and f"{RolloutState.ROLLED_BACK}" == "rolled_back"


@pytest.mark.parametrize("state,event", list(itertools.product(RolloutState, Event)))
def test_every_state_and_event(state, event):
    wanted = EXPECTED[state].get(event)
    assert allows(state, event) is (wanted is not None)
    assert allows(state.value, event) is (wanted is not None)
    if wanted is None:
        with pytest.raises(IllegalTransition):
            next_state(state, event)
    elif wanted == PAUSED_FROM:
        for back in (S.PENDING, S.PROGRESSING, S.BAKING):
            assert next_state(state, event, paused_from=back.value) == back
        assert next_state(state, event) == S.PROGRESSING  # a row paused before resume_state was recorded
        for nowhere in (S.PAUSED, S.PROMOTED, S.ROLLED_BACK, "sideways"):
            with pytest.raises(IllegalTransition):
                next_state(state, event, paused_from=nowhere)
    else:
        assert next_state(state, event) == wanted


def test_the_table_has_nothing_else():
    assert {(s, e) for s, moves in EXPECTED.items() for e in moves} == set(TRANSITIONS)


def test_finished_states_go_nowhere_but_a_promotion_can_be_rolled_back():
    for state in FINAL_STATES:
        moves = [e for e in Event if allows(state, e)]
        assert moves == ([E.ROLLBACK] if state == S.PROMOTED else [])


def test_an_unknown_state_string_is_refused():
    assert not allows("sideways", E.ROLLBACK)
    with pytest.raises(IllegalTransition):
        next_state("sideways", E.ROLLBACK)
