"""What earlier ticks of each rollout saw, read back from rollout_events for the judgement.

The judgement's e-processes multiply one factor per tick, each betting on what the ticks before it showed, so
judging a tick needs the counts of every earlier tick of the rollout, not only today's totals. They are in
rollout_events already: every judgement that only waits writes a row with its counts, and so does each
transition that a judgement caused (shift, bake, pause, rollback).
"""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import select

from bot.rollouts.judgement import Counts, StepTicks
from bot.rollouts.states import Event
from bot.rollouts.tables import RolloutEvent

# A shift or bake row is written with the step it enters, but its counts are those of the step it leaves.
_LEAVING = (Event.SHIFT, Event.BAKE)


def earlier_ticks(services, rollout_ids: Iterable[int]) -> dict[int, list[StepTicks]]:
    """rollout id -> the counts its earlier judgements saw, step by step, oldest first (one query for all)."""
    ids = sorted(set(rollout_ids))
    if not ids:
        return {}
    columns = (RolloutEvent.rollout_id, RolloutEvent.kind, RolloutEvent.step_index,
               RolloutEvent.stable_requests, RolloutEvent.stable_5xx, RolloutEvent.stable_4xx,
               RolloutEvent.candidate_requests, RolloutEvent.candidate_5xx, RolloutEvent.candidate_4xx)
    query = (select(*columns)
             .where(RolloutEvent.rollout_id.in_(ids), RolloutEvent.stable_requests.is_not(None),
                    RolloutEvent.candidate_requests.is_not(None))
             .order_by(RolloutEvent.rollout_id, RolloutEvent.id))
    steps: dict[int, dict[int, tuple[list[Counts], list[Counts]]]] = {}
    with services.store.session() as s:
        for rid, kind, step, sr, s5, s4, cr, c5, c4 in s.execute(query):
            step = step - 1 if kind in _LEAVING else step
            stable, candidate = steps.setdefault(rid, {}).setdefault(step, ([], []))
            stable.append(Counts(sr, s5 or 0, s4 or 0))
            candidate.append(Counts(cr, c5 or 0, c4 or 0))
    return {rid: [StepTicks(step, tuple(st), tuple(ca)) for step, (st, ca) in sorted(by_step.items())]
            for rid, by_step in steps.items()}

