"""Keeping Application Auto Scaling as bot/scaling/desired.py wants it: read what it has (in batches), change only
what differs, record what was set, and say in the model's channel, through the outbox, what a person should
know: scaling turned on or off, a hand-made change put back (once per change), a failure (once per kind).

Nothing here waits on Slack (messages are outbox rows written with the record), and a failure of one model's
calls does not stop the others'.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, select

from bot.integrations.autoscaling import AutoScalingError, Observed
from bot.registry import Model
from bot.scaling import desired as want
from bot.scaling import messages as text
from bot.scaling.desired import EndpointView, RolloutView, Step, Target
from bot.scaling.tables import ScalingModel, ScalingTarget
from bot.slack import outbox
from bot.store.base import utcnow

log = logging.getLogger(__name__)


def subject(model: str) -> str:
    return f"scaling:{model}"


@dataclass(frozen=True)
class ModelInput:
    """One model as the worker sees it: its endpoint (from the endpoint snapshot) and its latest rollout."""

    model: Model
    endpoint: EndpointView
    rollout: RolloutView | None = None


@dataclass
class PassResult:
    models: int = 0
    applied: int = 0
    drifts: int = 0
    deregistered: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.models:
            return "no model has a [models.X.scaling] table"
        text_ = (f"{self.models} models checked: {self.applied} targets set, {self.drifts} drifts put back, "
                 f"{self.deregistered} deregistered")
        if self.problems:
            text_ += "; problems: " + "; ".join(self.problems[:3]) + (
                f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else "")
        return text_


def observed_json(o: Observed | None) -> dict | None:
    if o is None:
        return None
    return {"min": o.min_capacity, "max": o.max_capacity, "scale_in_suspended": o.scale_in_suspended,
            "policy_target": o.policy.target_value if o.policy else None, "other_policies": list(o.other_policies)}


def _applied_json(t: Target) -> dict:
    value = t.to_json()
    value["policy_target"] = t.policy.target_value if t.policy else None
    return value


def _fingerprint(o: Observed | None) -> dict:
    return {"state": observed_json(o)}


# ---------------------------------------------------------------------------------------------------------
# The worker's pass


def reconcile(services, items: list[ModelInput], *, now: datetime | None = None) -> PassResult:
    """One pass over the models given: batched reads per region, then each model's changes."""
    now = now or utcnow()
    result = PassResult(models=len(items))
    names = [i.model.name for i in items]
    rows = recorded_for(services, names)
    with services.store.session() as s:
        troubled = set(s.scalars(select(ScalingModel.model).where(ScalingModel.model.in_(names),
                                                                  ScalingModel.problem.is_not(None))))
    recorded: dict[str, list[ScalingTarget]] = {}
    for r in rows:
        recorded.setdefault(r.model, []).append(r)
    by_region: dict[str, list[ModelInput]] = {}
    for item in items:
        by_region.setdefault(item.endpoint.region, []).append(item)
    for region, group in by_region.items():
        pairs = {(i.endpoint.endpoint, v.name) for i in group for v in i.endpoint.variants}
        pairs |= {(r.endpoint, r.variant) for i in group for r in recorded.get(i.model.name, []) if r.region == region}
        try:
            observed = services.autoscaling.read(region, sorted(pairs))
        except AutoScalingError as exc:
            for item in group:
                _problem(services, item.model, exc, now)
            result.problems.append(str(exc))
            continue
        for item in group:
            mine = recorded.get(item.model.name, [])
            wanted = want.desired(item.model.scaling, item.endpoint, item.rollout)
            try:
                converge(services, item.model, item.endpoint.endpoint, region, wanted, observed, mine, now, result)
            except AutoScalingError as exc:
                _problem(services, item.model, exc, now)
                result.problems.append(f"{item.model.name}: {exc}")
            else:
                if item.model.name in troubled:
                    _settled(services, item.model.name, now)
    return result


def converge(services, model: Model, endpoint: str, region: str, wanted: dict[str, Target | None],
             observed: dict[tuple[str, str], Observed], recorded: list[ScalingTarget], now: datetime,
             result: PassResult | None = None) -> None:
    """Brings one model's variants where `wanted` says; variants modelbot recorded before and no longer wants
    (another endpoint, scaling turned off, a variant gone) are deregistered. Raises AutoScalingError at the
    first failure; what was done before it is recorded."""
    result = result or PassResult()
    by_key = {(r.endpoint, r.variant): r for r in recorded}
    keys = [(endpoint, v) for v in wanted] + [k for k in by_key if k not in {(endpoint, v) for v in wanted}]
    turned_off: list[str] = []
    try:
        for key in keys:
            row = by_key.get(key)
            region_of = row.region if row is not None and key[0] != endpoint else region
            target = wanted.get(key[1]) if key[0] == endpoint else None
            have = observed.get(key)
            applied = Target.from_json(row.applied) if row is not None else None
            step = want.plan(target, have, applied)
            if step.action == "none" and _unchanged(row, target, have):
                continue  # the steady state: no call, no write
            _carry_out(services, key, region_of, step, have)
            _record(services, model, key, region_of, step, target, have, row, now)
            if step.action == "apply":
                result.applied += 1
                result.drifts += step.reason == "drift"
            elif step.action == "deregister":
                result.deregistered += 1
                turned_off.append(key[1])
    finally:
        if turned_off:
            _say(services, model, "off", text.turned_off(model.name, endpoint, turned_off), unique=",".join(turned_off)
                 + now.isoformat())


def _unchanged(row: ScalingTarget | None, target: Target | None, have: Observed | None) -> bool:
    """Nothing to do and nothing new to record: modelbot's record already says what Application Auto Scaling has."""
    if target is None:
        return row is None  # someone else's target, or none: not modelbot's to record
    return (row is not None and row.applied is not None and row.drift_said is None
            and row.observed == observed_json(have))


def _carry_out(services, key: tuple[str, str], region: str, step: Step, have: Observed | None) -> None:
    endpoint, variant = key
    a = services.autoscaling
    if step.action == "deregister":
        a.deregister(endpoint, variant, region)
        return
    if step.action != "apply":
        return
    t = step.target
    if have is None or not want.bounds_match(t, have):
        a.register(endpoint, variant, region, min_capacity=t.min_capacity, max_capacity=t.max_capacity,
                   scale_in_suspended=t.scale_in_suspended)
    if t.policy is not None and (have is None or not want.policy_matches(t.policy, have.policy)):
        a.put_policy(endpoint, variant, region, t.policy)
    elif t.policy is None and have is not None and have.policy is not None:
        a.delete_policy(endpoint, variant, region)


def _record(services, model: Model, key: tuple[str, str], region: str, step: Step, target: Target | None,
            have: Observed | None, row: ScalingTarget | None, now: datetime) -> None:
    """What was set, and what to say about it, in one transaction."""
    endpoint, variant = key
    with services.store.session() as s:
        current = s.scalar(select(ScalingTarget).where(ScalingTarget.model == model.name,
                                                       ScalingTarget.endpoint == endpoint,
                                                       ScalingTarget.variant == variant))
        if step.action == "deregister" or (target is None and have is None):
            if current is not None:
                s.delete(current)
            return
        if target is None:
            return  # someone else's target on a variant modelbot does not manage: left alone, not recorded
        if current is None:
            current = ScalingTarget(model=model.name, endpoint=endpoint, region=region, variant=variant, drifts=0)
            s.add(current)
        if step.action == "none":
            current.observed, current.observed_at = observed_json(have), now
            if current.applied is None:
                current.applied, current.applied_at = _applied_json(target), now
            current.drift_said = None  # as wanted again: a later change by hand is news
            return
        current.applied, current.applied_at = _applied_json(target), now
        current.observed, current.observed_at = _applied_json(target), now
        if step.reason == "drift":
            found = want.differences(target, have)
            fingerprint = _fingerprint(have)
            if current.drift_said != fingerprint:
                current.drifts = (current.drifts or 0) + 1
                current.drift_said = fingerprint
                _say_in(s, model, f"drift/{variant}/{current.drifts}",
                        text.drift(model.name, endpoint, variant, target, found))
        if step.reason in ("initial", "takeover") and target.role in ("serving", "stable"):
            announced = s.get(ScalingModel, model.name)
            if announced is None:
                announced = ScalingModel(model=model.name, problems_said=0)
                s.add(announced)
            if announced.announced_at is None:
                announced.announced_at = now
                _say_in(s, model, f"on/{now.isoformat()}",
                        text.turned_on(model.name, endpoint, variant, target, have))


# ---------------------------------------------------------------------------------------------------------
# Saying things once


def _say_in(session, model: Model, name: str, body: str) -> None:
    outbox.enqueue(session, key=f"scaling/{model.name}/{name}"[:255], subject=subject(model.name),
                   channel=model.channel, text=body)


def _say(services, model: Model, kind: str, body: str, *, unique: str) -> None:
    digest = hashlib.sha1(unique.encode()).hexdigest()[:12]
    with services.store.session() as s:
        _say_in(s, model, f"{kind}/{digest}", body)
        if kind == "off":
            row = s.get(ScalingModel, model.name)
            if row is not None and not s.scalar(select(ScalingTarget.id).where(ScalingTarget.model == model.name)
                                                .limit(1)):
                row.announced_at = None  # turned on again later: said again


def problem_key(exc: AutoScalingError) -> str:
    return ("throttled" if exc.throttled else exc.code or "unreachable")[:200]


def _problem(services, model: Model, exc: AutoScalingError, now: datetime, body: str | None = None) -> None:
    """A failure is said once per kind: throttling, a refusal code, unreachable. It stays on the model (for
    /model status) until a pass goes through."""
    log.warning("scaling of %s: %s", model.name, exc)
    key = problem_key(exc)
    with services.store.session() as s:
        row = s.get(ScalingModel, model.name)
        if row is None:
            row = ScalingModel(model=model.name, problems_said=0)
            s.add(row)
        row.problem, row.checked_at = str(exc)[:2000], now
        if row.problem_key != key:
            row.problem_key = key
            row.problems_said = (row.problems_said or 0) + 1
            _say_in(s, model, f"problem/{row.problems_said}", body or text.problem(model.name, str(exc)))


def _settled(services, model_name: str, now: datetime) -> None:
    with services.store.session() as s:
        row = s.get(ScalingModel, model_name)
        if row is None:
            s.add(ScalingModel(model=model_name, problems_said=0, checked_at=now))
            return
        row.problem, row.problem_key, row.checked_at = None, None, now


def report_capacity_problem(services, model: Model, variant: str, share: float, exc: AutoScalingError,
                            now: datetime | None = None) -> None:
    """The capacity before a shift could not be asked for; the shift went ahead. Said once per kind of failure,
    like any other."""
    _problem(services, model, exc, now or utcnow(), text.capacity_not_asked(model.name, variant, share, str(exc)))


def recorded_for(services, model_names: list[str]) -> list[ScalingTarget]:
    """What modelbot recorded for these models' variants (detached rows)."""
    if not model_names:
        return []
    with services.store.session() as s:
        rows = list(s.scalars(select(ScalingTarget).where(ScalingTarget.model.in_(model_names))))
        for r in rows:
            s.expunge(r)
    return rows


def forget(services, model_name: str, endpoint: str, variants: list[str]) -> None:
    """Variants deregistered outside a pass (before SageMaker removes them): nothing recorded is left for them."""
    with services.store.session() as s:
        s.execute(delete(ScalingTarget).where(ScalingTarget.model == model_name, ScalingTarget.endpoint == endpoint,
                                              ScalingTarget.variant.in_(variants)))


def status_of(session, names: list[str]) -> tuple[dict[str, dict[str, ScalingTarget]], dict[str, ScalingModel]]:
    """For /model status: each model's recorded targets by variant, and its model row (problem)."""
    if not names:
        return {}, {}
    targets: dict[str, dict[str, ScalingTarget]] = {}
    for r in session.scalars(select(ScalingTarget).where(ScalingTarget.model.in_(names))):
        targets.setdefault(r.model, {})[r.variant] = r
    models = {m.model: m for m in session.scalars(select(ScalingModel).where(ScalingModel.model.in_(names)))}
    return targets, models
