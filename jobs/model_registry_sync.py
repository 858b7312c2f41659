"""Keeps the SageMaker Model Registry in step with rollouts, apart from the rollout controller.

A deploy that carried a model package (dags/modelbot_pipelines.py registers one, PendingManualApproval) is
recorded by the run watcher. The package follows its candidate, whichever rollout moves it: the run's own
rollout, a `/model promote` or `/model promote --force` of the same variant, a rollback of it after it was
promoted. When such a rollout ends this job sets the package to Approved (promoted) or Rejected (rolled back,
automatically or by hand) with the reason as its approval description, and changes it again if a later rollout
of the candidate decides otherwise; aborted rollouts alone (replaced by a newer deploy) leave it pending. The
decision is written first and the registry call is idempotent, so a crash or an AWS outage only delays it to
the next pass. A traffic action never waits on this: the controller does not know the registry exists.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from bot.errors import ExternalError
from bot.integrations import model_registry
from bot.pipelines import packages
from bot.pipelines.tables import ModelPackage
from bot.rollouts.tables import Rollout, RolloutEvent
from bot.store.base import as_utc

log = logging.getLogger(__name__)

NAME = "model_registry_sync"
# The rollout states that end it (bot/rollouts' state strings, read only).
PROMOTED, ROLLED_BACK, ABORTED = "promoted", "rolled_back", "aborted"
ENDED = (PROMOTED, ROLLED_BACK, ABORTED)


def _promotion_text(session, r: Rollout) -> str:
    forced = session.scalars(select(RolloutEvent).where(RolloutEvent.rollout_id == r.id,
                                                        RolloutEvent.kind == "forced")
                             .order_by(RolloutEvent.id.desc()).limit(1)).first()
    where = f"`{r.candidate_variant}` on endpoint {r.endpoint}"
    if forced is not None:
        reason = (forced.detail or {}).get("reason")
        who = f"<@{forced.actor}>" if forced.actor else "a user"
        return f"modelbot: forced promotion of {where} by {who}" + (f": {reason}" if reason else "")
    return f"modelbot: promoted {where}; rollout #{r.id} passed every step and baked"


def decision_for(session, r: Rollout) -> tuple[str, str] | None:
    """(approval status, description) for an ended rollout; None while it runs."""
    if r.state not in ENDED:
        return None
    if r.state == PROMOTED:
        return packages.APPROVED, _promotion_text(session, r)
    if r.state == ROLLED_BACK:
        how = f"rolled back by <@{r.ended_by}>" if r.ended_by else "rolled back automatically"
        return packages.REJECTED, f"modelbot: {how}: {r.ended_reason or 'no reason given'}"
    return packages.UNCHANGED, f"modelbot: rollout aborted ({r.ended_reason or 'no reason given'}); left pending"


def deciding_rollout(session, row: ModelPackage) -> Rollout | None:
    """The rollout that decides the package: of the candidate's ended rollouts, the last to promote or roll it
    back; only aborted ones: the last of those; none ended: None (undecided, or still running)."""
    ended = list(session.scalars(select(Rollout).where(packages.candidate_match(ModelPackage, Rollout),
                                                       ModelPackage.id == row.id, Rollout.state.in_(ENDED))))
    decisive = [r for r in ended if r.state in (PROMOTED, ROLLED_BACK)] or ended
    return max(decisive, key=lambda r: (as_utc(r.updated_at), r.id), default=None)


def run_once(services) -> str:
    counts = dict.fromkeys(("approved", "rejected", "unchanged", "refused", "failed", "waiting"), 0)
    for row in packages.to_decide(services.store, Rollout, ENDED):
        with services.store.session() as s:
            rollout = deciding_rollout(s, row)
            decided = decision_for(s, rollout) if rollout is not None else None
        if decided is None:
            if row.approval_status is None:
                counts["waiting"] += 1  # no rollout yet, or still running
                continue
            status, description = row.approval_status, row.approval_description  # decided, not synced yet
        elif (decided[0], rollout.id) != (row.approval_status, row.rollout_id):
            status, description = decided
            if not packages.decide(services.store, row, rollout_id=rollout.id, status=status,
                                   description=description):
                continue  # another worker decided it a moment ago; it syncs it too
        else:
            status, description = row.approval_status, row.approval_description
            if row.synced_at is not None:
                packages.confirm(services.store, row.id)  # a rollout changed, the decision did not
                continue
        if status == packages.UNCHANGED:
            counts["unchanged"] += 1
            continue
        model = services.registry.get(row.model)
        problem = packages.package_problem(row.model_package_arn, model=row.model)
        if problem:  # recorded before modelbot checked packages: never approve another model's package
            log.warning("model registry sync: %s; not synced", problem)
            packages.mark_refused(services.store, row.id, problem)
            counts["refused"] += 1
            continue
        region = model_registry.region_of(row.model_package_arn, model.region if model else
                                          services.registry.defaults.region)
        try:
            services.model_registry.set_approval(row.model_package_arn, region, status, description or "")
        except ExternalError as exc:
            log.warning("model registry sync: %s", exc)
            packages.mark_failed(services.store, row.id, str(exc))
            counts["failed"] += 1
            continue
        packages.mark_synced(services.store, row.id)
        counts["approved" if status == packages.APPROVED else "rejected"] += 1
    words = {"approved": "approved", "rejected": "rejected", "unchanged": "left pending (rollout aborted)",
             "refused": "refused (not the model's own package)", "failed": "failed, retried next pass",
             "waiting": "waiting for their rollout"}
    parts = [f"{n} {words[key]}" for key, n in counts.items() if n]
    return ", ".join(parts) if parts else "nothing to do"
