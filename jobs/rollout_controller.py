"""The rollout controller: one pass over every unfinished rollout.

Per pass:
1. intents left by a crash or a failed call are finished first (idempotently; see bot/rollouts/executor.py);
   only their traffic part can be owed: messages wait in the Slack outbox (jobs/outbox_delivery.py), so a
   Slack outage never keeps a rollout from being judged;
2. pending rollouts take their first step; baking ones that have baked long enough are promoted; a deploy that
   waited for a rollout that has ended starts;
3. progressing (and paused) rollouts get their counts since the step began -- one GetMetricData call per
   83 rollouts (500 queries), not one per rollout -- and are judged: shift, wait, roll back or pause.
   A paused rollout is only acted on when the candidate is shown to be worse; so is one whose traffic change
   is owed (SageMaker refused it: the endpoint is Updating, or throttled), and the rollback replaces the owed
   change. Counts that CloudWatch gave only in part are not judged; /model status says so.
The tick itself says nothing: no Slack call, no PagerDuty call. What a transition says, and a rollback's page,
are rows the delivery jobs send on their own threads (outbox_delivery, pagerduty_delivery, page_escalation),
so every rollout's traffic change comes first, whatever Slack or PagerDuty are doing. Its clock is the
database's.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.integrations import cloudwatch
from bot.rollouts import executor, judgement_history, latency_minutes, service
from bot.rollouts import tables as store
from bot.rollouts.judgement import Counts, judge
from bot.rollouts.plans import plan_finish_bake, plan_judgement
from bot.rollouts.states import RolloutState

log = logging.getLogger(__name__)

NAME = "rollout_controller"


@dataclass
class TickStats:
    counts: Counter = field(default_factory=Counter)
    cloudwatch_calls: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        if not sum(c.values()) and not self.problems:
            return "no rollouts in progress"
        parts = [f"{c[k]} {k}" for k in ("resumed", "started", "waited", "shifted", "baked", "promoted",
                                          "rolled back", "paused", "held", "not judged", "owed",
                                          "handed over") if c[k]]
        parts.append(f"{self.cloudwatch_calls} GetMetricData call(s)")
        if self.problems:
            parts.append("problems: " + "; ".join(self.problems[:3])
                         + (f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else ""))
        return ", ".join(parts)


def run_once(services, now: datetime | None = None) -> str:
    # Each AWS call has a deadline well within the tick: a later rollout's rollback in the same tick must not
    # wait for a hung SageMaker call.
    return tick(services.for_controller, now).summary()


def tick(services, now: datetime | None = None, *,
         max_queries_per_call: int = cloudwatch.MAX_QUERIES_PER_CALL) -> TickStats:
    now = now or executor.database_time(services)
    stats = TickStats()
    with services.store.session() as s:
        leftovers = [r.id for r in store.needing_work(s) if r.pending is not None]
    for rollout_id in leftovers:
        try:
            problem = executor.carry_out(services, rollout_id, deliver=False)
        except Exception as exc:  # one broken rollout must not hold up the others
            log.exception("rollout %s: finishing its last transition failed", rollout_id)
            problem = f"{type(exc).__name__}: {exc}"
        stats.counts["owed" if problem else "resumed"] += 1
        if problem:
            stats.problems.append(f"rollout {rollout_id}: {problem}")

    with services.store.session() as s:
        rows = [r for r in store.needing_work(s) if r.state in store.ACTIVE_STATES]
        ended = store.waited_for(s)
    judged = []
    for r in rows:
        try:
            if r.state == RolloutState.PENDING and r.pending is None:
                after = service.begin(services, r.id, now, deliver=False)
                stats.counts["started" if after and after.state != "pending" else "owed"] += 1
            elif r.state == RolloutState.BAKING and r.pending is None:
                _bake(services, r, now, stats)
            elif r.step_started_at is not None and (
                    r.state == RolloutState.PROGRESSING
                    or (r.state == RolloutState.PAUSED and r.resume_state == RolloutState.PROGRESSING)):
                # Judged also while a traffic change is owed: a rollback must not wait for SageMaker to take
                # the step it replaces. (A paused bake has no traffic on the stable variant to compare with.)
                judged.append(r)
        except Exception as exc:  # one broken rollout must not hold up the others
            log.exception("rollout %s failed in this pass", r.id)
            stats.problems.append(f"rollout {r.id}: {type(exc).__name__}: {exc}")
    _judge_all(services, judged, now, stats, max_queries_per_call)
    for r in ended:  # a deploy waited for this rollout, which has ended and whose last change is done
        try:
            if service.start_waiting(services, r, now) is not None:
                stats.counts["handed over"] += 1
        except Exception as exc:
            log.exception("rollout %s: starting the deploy that waited for it failed", r.id)
            stats.problems.append(f"rollout {r.id}: {type(exc).__name__}: {exc}")
    return stats


def _bake(services, r, now: datetime, stats: TickStats) -> None:
    settings = executor.settings_for(services, r.model)
    started = r.when("step_started_at")
    if started is None or now - started < timedelta(minutes=settings.bake_minutes):
        return
    _, plan = executor.transition(services, r.id, lambda cur: plan_finish_bake(cur, now)
                                  if cur.state == RolloutState.BAKING and cur.pending is None else None,
                                  deliver=False)
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
        for r in group:
            if r.id in result.incomplete:
                executor.record_not_judged(services, r, result.incomplete[r.id], now)
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
    if plan is not None and r.pending is not None and plan.kind != "rollback":
        plan = None  # a traffic change is owed: only a rollback replaces it, no second step on top of it
    if plan is None:
        # Paused: the history is kept, but the step's message is not edited to "shift" while a human holds it.
        executor.record_judgement(services, r, settings, decision, stable, candidate, now,
                                  edit=r.state != RolloutState.PAUSED)
        stats.counts["held" if r.state == RolloutState.PAUSED or r.pending is not None else "waited"] += 1
        return
    committed = executor.commit(services, r, plan)
    if committed is None:
        stats.counts["held"] += 1  # another worker moved it first; it is judged again next pass
        return
    # The traffic part only; what it says (and a rollback's page) goes out from the delivery jobs.
    problem = executor.carry_out(services, r.id, deliver=False)
    if problem:
        stats.problems.append(f"rollout {r.id}: {problem}")
    stats.counts[{"shift": "shifted", "bake": "baked", "rollback": "rolled back", "pause": "paused"}
                 .get(plan.kind, plan.kind)] += 1
