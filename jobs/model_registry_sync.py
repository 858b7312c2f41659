"""Keeps the SageMaker Model Registry in step with rollouts, apart from the rollout controller.

A deploy that carried a model package (dags/modelbot_pipelines.py registers one, PendingManualApproval) is
recorded by the run watcher. Once the rollout started from that run has ended, this job sets the package to
Approved (promoted) or Rejected (rolled back, automatically or by hand) with the reason as its approval
description; an aborted rollout (replaced by a newer deploy) leaves it pending. The decision is written first
and the registry call is idempotent, so a crash or an AWS outage only delays it to the next pass. A traffic
action never waits on this: the controller does not know the registry exists.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from bot.errors import ExternalError
from bot.integrations import model_registry
from bot.pipelines import packages
from bot.rollouts.tables import Rollout, RolloutEvent, by_run_key

log = logging.getLogger(__name__)

NAME = "model_registry_sync"
# The rollout states that end it (bot/rollouts' state strings, read only).
PROMOTED, ROLLED_BACK, ABORTED = "promoted", "rolled_back", "aborted"


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
    if r.state not in (PROMOTED, ROLLED_BACK, ABORTED):
        return None
    if r.state == PROMOTED:
        return packages.APPROVED, _promotion_text(session, r)
    if r.state == ROLLED_BACK:
        how = f"rolled back by <@{r.ended_by}>" if r.ended_by else "rolled back automatically"
        return packages.REJECTED, f"modelbot: {how}: {r.ended_reason or 'no reason given'}"
    return packages.UNCHANGED, f"modelbot: rollout aborted ({r.ended_reason or 'no reason given'}); left pending"


def run_once(services) -> str:
    approved = rejected = unchanged = failed = waiting = 0
    for row in packages.unsynced(services.store):
        status, description = row.approval_status, row.approval_description
        if status is None:
            with services.store.session() as s:
                rollout = by_run_key(s, f"{row.model}/{row.run_id}")
                decided = decision_for(s, rollout) if rollout is not None else None
            if decided is None:
                waiting += 1  # no rollout yet, or still running
                continue
            status, description = decided
            if not packages.decide(services.store, row.id, rollout_id=rollout.id, status=status,
                                   description=description):
                continue  # another worker decided it a moment ago; it syncs it too
            if status == packages.UNCHANGED:
                unchanged += 1
                continue
        model = services.registry.get(row.model)
        region = model_registry.region_of(row.model_package_arn, model.region if model else
                                          services.registry.defaults.region)
        try:
            services.model_registry.set_approval(row.model_package_arn, region, status, description or "")
        except ExternalError as exc:
            log.warning("model registry sync: %s", exc)
            packages.mark_failed(services.store, row.id, str(exc))
            failed += 1
            continue
        packages.mark_synced(services.store, row.id)
        if status == packages.APPROVED:
            approved += 1
        else:
            rejected += 1
    parts = [f"{n} {what}" for n, what in ((approved, "approved"), (rejected, "rejected"),
                                           (unchanged, "left pending (rollout aborted)"),
                                           (failed, "failed, retried next pass"), (waiting, "waiting for their rollout"))
             if n]
    return ", ".join(parts) if parts else "nothing to do"
