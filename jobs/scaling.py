"""Keeps each model's Application Auto Scaling as its `[models.X.scaling]` table and its rollout want
(bot/scaling/desired.py): registers scalable targets and their policy, suspends scale-in while a rollout moves
traffic and resumes it after, moves the scaling to the variant a rollout promoted, parks a rolled-back
candidate, puts back what was changed by hand (said once in the model's channel), and deregisters what
modelbot no longer wants.

It reads the endpoints from the worker's endpoint snapshot (no SageMaker call of its own) and each model's
latest rollout, then Application Auto Scaling in batches per region (bot/scaling/reconcile.py). What must
happen in order with a traffic change (capacity before a shift, deregistration before a variant is removed)
the rollout executor does itself; a rollback never waits for this job.
"""

from __future__ import annotations

from sqlalchemy import func, select

from bot.rollouts.tables import Rollout
from bot.scaling import reconcile
from bot.scaling.desired import EndpointView, RolloutView, VariantView
from bot.scaling.tables import ScalingTarget
from bot.status.tables import EndpointSnapshot

NAME = "scaling"


def _endpoint(snap: EndpointSnapshot) -> EndpointView:
    return EndpointView(endpoint=snap.endpoint, region=snap.region, variants=tuple(
        VariantView(name=v["name"], weight=float(v.get("weight") or 0.0),
                    instance_count=v.get("instance_count") if v.get("instance_count") is not None
                    else v.get("desired_instance_count"),
                    instance_type=v.get("instance_type"))
        for v in snap.variants or []))


def _rollout(r: Rollout | None) -> RolloutView | None:
    if r is None:
        return None
    weights = r.target_weights or {}
    total = sum(float(w) for w in weights.values()) or 1.0
    share = float(weights.get(r.candidate_variant, 0.0)) / total if weights else (1.0 if r.state == "baking" else 0.0)
    return RolloutView(state=r.state, stable=r.stable_variant, candidate=r.candidate_variant, candidate_share=share)


def inputs(services) -> tuple[list[reconcile.ModelInput], list[str]]:
    """Each model with a scaling table, or with targets modelbot set before, as the snapshot last read it; and
    the models left out this pass, with why."""
    registry = services.registry
    with services.store.session() as s:
        managed = set(s.scalars(select(ScalingTarget.model).distinct()))
        names = sorted({m.name for m in registry.models.values() if m.scaling is not None} | managed)
        snaps = {row.model: row for row in s.scalars(select(EndpointSnapshot).where(EndpointSnapshot.model.in_(names)))}
        latest_ids = select(func.max(Rollout.id)).where(Rollout.model.in_(names)).group_by(Rollout.model)
        latest = {r.model: r for r in s.scalars(select(Rollout).where(Rollout.id.in_(latest_ids)))}
        items, skipped = [], []
        for name in names:
            model = registry.get(name)
            snap = snaps.get(name)
            if model is None:
                skipped.append(f"{name}: no longer in the models file (its targets are left as they are)")
            elif not model.endpoint:
                skipped.append(f"{name}: no endpoint registered")
            elif snap is None or snap.ok_at is None or snap.endpoint != model.endpoint:
                skipped.append(f"{name}: endpoint not read yet")
            elif snap.error is not None:
                skipped.append(f"{name}: the last endpoint read failed")
            else:
                items.append(reconcile.ModelInput(model=model, endpoint=_endpoint(snap), rollout=_rollout(latest.get(name))))
    return items, skipped


def run_once(services) -> str:
    items, skipped = inputs(services)
    summary = reconcile.reconcile(services, items).summary() if items or not skipped else "nothing to check"
    if skipped:
        summary += f"; {len(skipped)} skipped ({'; '.join(skipped[:3])}{'; …' if len(skipped) > 3 else ''})"
    return summary
