"""The rollout controller: one pass over every unfinished rollout.

Per pass:
1. intents left by a crash or a failed call are finished first (idempotently; see bot/rollouts/executor.py);
   only their traffic part can be owed: messages wait in the Slack outbox (jobs/outbox_delivery.py), so a
   Slack outage never keeps a rollout from being judged;
2. pending rollouts take their first step; baking ones that have baked long enough are promoted;
3. progressing (and paused) rollouts get their counts since the step began -- one GetMetricData call per
   83 rollouts (500 queries), not one per rollout -- and are judged: shift, wait, roll back or pause.
   A paused rollout is only acted on when the candidate is shown to be worse.
Messages are tried after each traffic change, until Slack's first failure in the tick.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.integrations import cloudwatch
from bot.rollouts import executor, judgement_history, latency_minutes, notices, service
from bot.rollouts import tables as store
from bot.rollouts.judgement import Counts, judge
from bot.rollouts.plans import plan_finish_bake, plan_judgement
from bot.rollouts.states import RolloutState
from bot.store.base import utcnow

log = logging.getLogger(__name__)

NAME = "rollout_controller"


@dataclass
class TickStats:
    counts: Counter = field(default_factory=Counter)
    cloudwatch_calls: int = 0
    problems: list[str] = field(default_factory=list)
    # Set at Slack's first failure in this tick: no more messages are tried until the next one (they wait in
    # the outbox), so an outage costs a tick one Slack timeout, not one per rollout.
    slack_failing: bool = False

    def deliver(self, services, rollout_id: int) -> None:
        if self.slack_failing:
            return
        if notices.deliver(services, rollout_id).failed:
            self.slack_failing = True

    def summary(self) -> str:
        c = self.counts
        if not sum(c.values()) and not self.problems:
            return "no rollouts in progress"
        parts = [f"{c[k]} {k}" for k in ("resumed", "started", "waited", "shifted", "baked", "promoted",
                                          "rolled back", "paused", "held", "not judged", "owed") if c[k]]
        parts.append(f"{self.cloudwatch_calls} GetMetricData call(s)")
        if self.problems:
            parts.append("problems: " + "; ".join(self.problems[:3])
                         + (f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else ""))
        return ", ".join(parts)


def run_once(services, now: datetime | None = None) -> str:
    # The worker's tick talks to Slack once per message, never sleeping through a 429's Retry-After, and each
    # AWS call has a deadline well within the tick: a later rollout's rollback in the same tick must not wait
    # for an earlier one's evidence edit or a hung SageMaker call.
    return tick(services.for_controller, now).summary()


def tick(services, now: datetime | None = None, *,
         max_queries_per_call: int = cloudwatch.MAX_QUERIES_PER_CALL) -> TickStats:
    now = now or utcnow()
    stats = TickStats()
    with services.store.session() as s:
        leftovers = [r.id for r in store.needing_work(s) if r.pending is not None]
    for rollout_id in leftovers:
        try:
            problem = executor.carry_out(services, rollout_id, deliver=False)
            stats.deliver(services, rollout_id)
        except Exception as exc:  # one broken rollout must not hold up the others
            log.exception("rollout %s: finishing its last transition failed", rollout_id)
            problem = f"{type(exc).__name__}: {exc}"
        stats.counts["owed" if problem else "resumed"] += 1
        if problem:
            stats.problems.append(f"rollout {rollout_id}: {problem}")

    with services.store.session() as s:
        rows = [r for r in store.needing_work(s) if r.pending is None and r.state in store.ACTIVE_STATES]
    judged = []
    for r in rows:
        try:
            if r.state == RolloutState.PENDING:
                after = service.begin(services, r.id, now)
                stats.counts["started" if after and after.state != "pending" else "owed"] += 1
            elif r.state == RolloutState.BAKING:
                _bake(services, r, now, stats)
            elif r.step_started_at is not None and (
                    r.state == RolloutState.PROGRESSING
                    or (r.state == RolloutState.PAUSED and r.resume_state == RolloutState.PROGRESSING)):
                judged.append(r)  # a paused bake has no traffic on the stable variant to compare with
        except Exception as exc:  # one broken rollout must not hold up the others
            log.exception("rollout %s failed in this pass", r.id)
            stats.problems.append(f"rollout {r.id}: {type(exc).__name__}: {exc}")
    _judge_all(services, judged, now, stats, max_queries_per_call)
    return stats


def _bake(services, r, now: datetime, stats: TickStats) -> None:
    settings = executor.settings_for(services, r.model)
    started = r.when("step_started_at")
    if started is None or now - started < timedelta(minutes=settings.bake_minutes):
        return
    _, plan = executor.transition(services, r.id, lambda cur: plan_finish_bake(cur, now)
                                  if cur.state == RolloutState.BAKING and cur.pending is None else None)
    stats.counts["promoted" if plan else "held"] += 1


def _judge_all(services, rows, now: datetime, stats: TickStats, max_queries_per_call: int) -> None:
    by_region: dict[str, list] = {}
    for r in rows:
        by_region.setdefault(r.region, []).append(r)
    for region, group in by_region.items():
        queries = [cloudwatch.RolloutQuery(key=r.id, endpoint=r.endpoint,
                                           variants=(r.stable_variant, r.candidate_variant),
                                           since=r.when("step_started_at")) for r in group]
        try:
            result = services.cloudwatch.fetch_counts(queries, region, end=now,
                                                      max_queries_per_call=max_queries_per_call)
        except Exception as exc:
            log.exception("reading CloudWatch in %s failed", region)
            stats.problems.append(f"{region}: {type(exc).__name__}: {exc}")
            stats.counts["not judged"] += len(group)
            continue
        stats.cloudwatch_calls += result.calls
        for error in sorted(set(result.failed.values())):
            stats.problems.append(error)
        # The judgement bets, tick by tick, on what the earlier ticks showed: it needs them all (one query).
        history = judgement_history.earlier_ticks(services, [r.id for r in group if r.id in result.counts])
        # Models with a latency_margin: ModelLatency minute by minute, read the same way; incomplete: not judged.
        latency = latency_minutes.read(services, [r for r in group if r.id in result.counts], region, now)
        stats.cloudwatch_calls += latency.calls
        for r in group:
            counts = result.counts.get(r.id)
            if counts is None or r.id in latency.not_judged:
                stats.counts["not judged"] += 1
                if r.id in latency.not_judged:
                    stats.problems.append(f"rollout {r.id}: {latency.not_judged[r.id]}")
                continue
            try:
                _judge_one(services, r, counts, now, stats, history=history.get(r.id, ()),
                           latency=latency.minutes.get(r.id))
            except Exception as exc:
                log.exception("rollout %s: judging failed", r.id)
                stats.problems.append(f"rollout {r.id}: {type(exc).__name__}: {exc}")


def _judge_one(services, r, counts, now: datetime, stats: TickStats, history=(), latency=None) -> None:
    model = services.registry.get(r.model)
    if model is None:
        stats.counts["not judged"] += 1
        stats.problems.append(f"rollout {r.id}: model {r.model} is no longer in the models file")
        return
    settings = model.rollout

    def as_counts(c: cloudwatch.VariantCounts):
        return Counts(requests=c.requests, errors_5xx=c.errors_5xx, errors_4xx=c.errors_4xx)

    stable, candidate = as_counts(counts[r.stable_variant]), as_counts(counts[r.candidate_variant])
    timer = r.when("timer_started_at") or r.when("step_started_at")
    # A paused rollout is judged only for a rollback: its clock does not run towards another pause.
    minutes = 0.0 if r.state == RolloutState.PAUSED else max(0.0, (now - timer).total_seconds() / 60)
    decision = judge(stable, candidate, settings, minutes, step=r.step_index, steps=r.steps, history=history,
                     latency=latency)
    plan = plan_judgement(r, settings, decision, stable, candidate, now)
    if plan is None:
        # Paused: the history is kept, but the step's message is not edited to "shift" while a human holds it.
        edited = executor.record_judgement(services, r, settings, decision, stable, candidate, now,
                                           edit=r.state != RolloutState.PAUSED and not stats.slack_failing)
        stats.slack_failing |= not edited
        stats.counts["held" if r.state == RolloutState.PAUSED else "waited"] += 1
        return
    committed = executor.commit(services, r, plan)
    if committed is None:
        stats.counts["held"] += 1  # another worker moved it first; it is judged again next pass
        return
    # The traffic part first, for every rollout judged; what it says is tried once Slack is known to answer.
    problem = executor.carry_out(services, r.id, deliver=False)
    stats.deliver(services, r.id)
    if problem:
        stats.problems.append(f"rollout {r.id}: {problem}")
    stats.counts[{"shift": "shifted", "bake": "baked", "rollback": "rolled back", "pause": "paused"}
                 .get(plan.kind, plan.kind)] += 1
