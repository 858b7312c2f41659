"""Carrying a transition out: commit the plan (new state and intent in one optimistic UPDATE), then do the
intent's traffic part (SageMaker, idempotent: weights are read before they are set), then clear the intent and
queue its notifications in one transaction (bot/rollouts/notices.py delivers them through the outbox).

A worker killed anywhere in between leaves the intent in the row; the next pass finds it and finishes it. No
traffic change ever waits for Slack: the intent is cleared as soon as SageMaker has what it wants, so the
controller judges the rollout on its next tick whatever messages are still owed. A rollback's page and an
action's audit row are written in the transaction that commits the transition: neither can be lost to what
happens after it.

When setting weights fails, whatever the endpoint should have stays owed on the rollout's latest version:
a stale intent that wrote after a newer one (a shift loaded before a button's rollback) can never leave the
rollback marked done while the endpoint serves the shift.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot import audit
from bot.integrations import sagemaker
from bot.integrations.autoscaling import AutoScalingError
from bot.paging import service as pager
from bot.registry import RolloutSettings
from bot.rollouts import messages as text
from bot.rollouts import notices
from bot.rollouts import tables as store
from bot.rollouts.plans import (
    Intent,
    Plan,
    Retire,
    action_name,
    event_row,
    json_safe,
    plan_abort,
)
from bot.rollouts.states import RolloutState
from bot.rollouts.tables import Rollout, RolloutEvent
from bot.scaling import capacity
from bot.slack import outbox
from bot.slack.outbox import crash_point
from bot.store.base import utcnow
from bot.store.foundation import database_now

log = logging.getLogger(__name__)

# While a step only waits, its message is edited at most this often (chat.update is rate limited per workspace).
EVIDENCE_EDIT_SECONDS = 60
COMMAND_ATTEMPTS = 5


class RolloutRefused(Exception):
    """The rollout command cannot be done as asked; the message (mrkdwn, escaped) says why and what to do."""


def settings_for(services, model_name: str) -> RolloutSettings:
    model = services.registry.get(model_name)
    return model.rollout if model else RolloutSettings()


def commit(services, r: Rollout, plan: Plan, *, audited: dict | None = None) -> Rollout | None:
    """Writes the plan if the row is still the version that was read; None when someone else moved it first.

    In the same transaction: the transition's event, the page of a rollback (so the page exists whatever Slack
    or PagerDuty do next) and, for a person's action, its audit row (`audited`: audit.add's arguments)."""
    plan.intent.id = f"{r.id}.{r.version + 1}"
    with services.store.session() as s:
        if not store.save(s, r, **plan.values, pending=plan.intent.to_json(), last_error=None):
            return None
        s.add(RolloutEvent(rollout_id=r.id, **plan.event))
        if plan.intent.page is not None:
            _open_page(services, s, r, plan.intent)
        if audited is not None:
            audit.add(s, model=r.model, outcome="ok", rollout_id=r.id, **audited)
    crash_point("after_intent")
    with services.store.session() as s:
        return store.get(s, r.id)


def _open_page(services, session, r: Rollout, intent: Intent) -> None:
    order = intent.page
    pager.open_rollback_page(services, session, model_name=r.model, rollout_id=r.id, reason=order.reason,
                             automatic=order.automatic, actor=order.actor, channel=r.thread_channel,
                             thread_ts=r.thread_ts)


def database_time(services) -> datetime:
    """Now, on the database's clock: the one every process agrees on (a step's start, a command's time)."""
    with services.store.session() as s:
        return database_now(s)


def load(services, rollout_id: int) -> Rollout | None:
    with services.store.session() as s:
        return store.get(s, rollout_id)


def carry_out(services, rollout_id: int, *, deliver: bool = True, wait: float = 0.0) -> str | None:
    """Does the rollout's pending intent; None when it is done (or there was none), else what is still owed.

    Only the traffic part can be owed: once SageMaker has what the intent wants, its notifications are queued
    in the outbox in the same transaction that clears the intent. deliver=True (a command, the run watcher):
    they are delivered now if Slack answers, with the rollout's page; the rollout controller passes False and
    leaves all of it to the delivery jobs. An intent that a newer transition replaced is not finished: the newer
    one is carried out instead (its weights include everything the endpoint should now have).

    One process at a time carries a rollout's intent out (a claim on the row, on the database's clock): a
    command and the controller's tick that find the same intent never both send it. `wait`: how long to wait
    for another process's claim (that process finishes the intent meanwhile).
    """
    problem = None
    r = load(services, rollout_id)
    if r is not None and r.pending is not None:
        holder = f"{outbox.HOLDER}:{uuid.uuid4().hex[:8]}"
        if not _take_carry(services, rollout_id, holder, wait):
            problem = "another process is carrying this change out right now"
        else:
            try:
                for _ in range(COMMAND_ATTEMPTS):
                    r = load(services, rollout_id)
                    if r is None or r.pending is None:
                        problem = None
                        break
                    problem, finished = _carry_out_once(services, r)
                    if not finished:
                        break
            finally:
                with services.store.session() as s:
                    s.execute(update(Rollout).where(Rollout.id == rollout_id, Rollout.carry_holder == holder)
                              .values(carry_holder=None, carry_until=None))
    if deliver:
        notices.deliver(services, rollout_id)
    return problem


# Longer than carrying an intent out takes (a weight change: two SageMaker calls). A process killed while it
# held the claim delays the intent by at most this long; one still working past it (a hung SageMaker, each
# call cut at the controller's deadline) may see another process send the same weights too, which is harmless.
CARRY_SECONDS = 20
# A command waits this long for the process carrying the same rollout's change out (usually the controller).
COMMAND_CARRY_WAIT_SECONDS = 10.0


def _take_carry(services, rollout_id: int, holder: str, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        with services.store.session() as s:
            now = database_now(s)
            if s.execute(update(Rollout).where(
                    Rollout.id == rollout_id, or_(Rollout.carry_until.is_(None), Rollout.carry_until < now))
                    .values(carry_holder=holder, carry_until=now + timedelta(seconds=CARRY_SECONDS))).rowcount == 1:
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _carry_out_once(services, r: Rollout) -> tuple[str | None, bool]:
    """One attempt; (what is still owed or None, whether to look at the row again)."""
    intent = Intent.from_json(r.pending)
    newer = _newer_rollout(services, r)
    if newer is not None:
        # A newer rollout of the model has moved traffic since: forcing this intent's weights now would undo it.
        _drop(services, r, intent, f"superseded by rollout {newer}, which has started since; not carried out")
        return None, True
    try:
        aws = _aws_part(services, r, intent)
    except (sagemaker.EndpointNotFound, sagemaker.VariantNotFound) as exc:
        if intent.kind not in ("rollback", "promoted", "aborted"):
            # The endpoint or a variant is gone: this rollout cannot go on. Its abort replaces the intent.
            commit(services, r, plan_abort(r, database_time(services), reason=str(exc)))
            return None, True
        aws = {"note": f":warning: {exc}"}
    except sagemaker.SageMakerError as exc:
        problem = str(exc)
        with services.store.session() as s:
            current = s.scalar(select(Rollout.version).where(Rollout.id == r.id))
            _owe_latest(s, r.id, problem)
            if current == r.version:  # a stale writer's failure is not this rollout's news
                notices.queue_failure(services, s, r, intent, _what(intent, r), problem)
        return problem, False
    crash_point("after_aws")
    if not _clear_and_queue(services, r, intent, aws):
        return None, True  # replaced by a newer transition: carry that one out instead
    if intent.resolve_earlier:
        _resolve_earlier_pages(services, r)
    return None, True


def _newer_rollout(services, r: Rollout) -> int | None:
    """A later rollout of the same model that has begun (moved traffic), if any."""
    with services.store.session() as s:
        return s.scalar(select(Rollout.id).where(
            Rollout.model == r.model, Rollout.id > r.id, Rollout.state != RolloutState.PENDING).limit(1))


def older_traffic_owed(services, r: Rollout) -> int | None:
    """An earlier rollout of the same model whose traffic change is not done yet (an abort, say): nothing new
    starts on the endpoint before it is."""
    with services.store.session() as s:
        return s.scalar(select(Rollout.id).where(
            Rollout.model == r.model, Rollout.id < r.id, Rollout.pending.is_not(None)).limit(1))


def _clear_and_queue(services, r: Rollout, intent: Intent, aws: dict[str, str]) -> bool:
    """In one transaction: the intent is cleared and its notifications are queued. False when the row is no
    longer the version read (a newer transition replaced the intent)."""
    with services.store.session() as s:
        if not store.save(s, r, pending=None, last_error=None):
            s.rollback()
            return False
        notices.queue(services, s, r, intent, aws)
    return True


def _drop(services, r: Rollout, intent: Intent, why: str) -> None:
    log.warning("rollout %s: intent %s (%s) dropped: %s", r.id, intent.id, intent.kind, why)
    with services.store.session() as s:
        store.save(s, r, pending=None, last_error=why)


# What a rollout owes when a weight change failed after its own intent was cleared (a stale writer's change
# landed after it): the weights of its latest target, nothing to say.
CONVERGE = "converge"


def _owe_latest(session, rollout_id: int, error: str) -> None:
    """Setting weights failed: whatever the rollout's latest version wants from the endpoint stays owed.

    The row's intent is kept when it has one (it may be a newer transition's, with its messages); when it has
    none (a newer transition finished before this stale write landed), an intent to converge on the latest
    target is written. Either way the version moves on, so a process about to clear the intent on the strength
    of weights it read before this write looks again instead."""
    converge = Intent(kind=CONVERGE, weights=True, id=f"{rollout_id}.owed").to_json()
    error = error[:2000]
    bump = dict(version=Rollout.version + 1, last_error=error, updated_at=utcnow())
    session.execute(update(Rollout).where(Rollout.id == rollout_id, Rollout.pending.is_not(None),
                                          Rollout.target_weights.is_not(None)).values(**bump))
    session.execute(update(Rollout).where(Rollout.id == rollout_id, Rollout.pending.is_(None),
                                          Rollout.target_weights.is_not(None)).values(pending=converge, **bump))
    # A rollout whose target is a config (a promoted one rolled back) keeps its intent as it is.
    session.execute(update(Rollout).where(Rollout.id == rollout_id, Rollout.target_weights.is_(None),
                                          Rollout.pending.is_not(None)).values(last_error=error))


def _what(intent: Intent, r: Rollout) -> str:
    kind = intent.kind
    if kind == "rollback":
        return f"The rollback of `{r.endpoint}`"
    if kind == "promoted":
        return f"Retiring `{r.stable_variant}` from `{r.endpoint}`"
    return f"Setting the traffic split of `{r.endpoint}`"


def _aws_part(services, r: Rollout, intent: Intent) -> dict[str, str]:
    """Brings the endpoint where the intent wants it. Returns what the message should say beyond the plan:
    {"restored": config} when a config was restored, {"note": text} when something was left undone."""
    if intent.restore:
        return _restore(services, r, intent.restore_config)
    if intent.weights and r.target_weights:
        # A larger share for the candidate waits (stays owed) until it has the instances for it; a rollback,
        # which only takes traffic away from it, never comes through here.
        capacity.before_traffic(services, kind=intent.kind, model_name=r.model, endpoint=r.endpoint,
                                region=r.region, stable=r.stable_variant, candidate=r.candidate_variant,
                                weights=r.target_weights)
        _converge_weights(services, r)
    if intent.retire:
        return _retire(services, r, intent.retire)
    return {}


def _converge_weights(services, r: Rollout) -> None:
    """Sets the target weights, then reads the target again: if a newer transition changed it meanwhile,
    its weights are set too, so the endpoint always ends on the latest target whoever finishes last."""
    target = r.target_weights
    for _ in range(3):
        services.sagemaker.set_weights(r.endpoint, r.region, target)
        latest = load(services, r.id)
        if latest is None or not latest.target_weights or latest.target_weights == target:
            return
        target = latest.target_weights


def _retire(services, r: Rollout, retire: Retire) -> dict[str, str]:
    """After baking: the endpoint moves to a config serving only the candidate (the old variant's instances
    go away), and the candidate of a deploy waiting for this rollout at 0. The variants it drops stop being
    scalable targets first (UpdateEndpoint refuses otherwise). Best effort: if it fails, the old variant simply
    stays at 0%, which is safe; the thread says so."""
    sm = services.sagemaker
    waiting = (r.next_deploy or {}).get("candidate_variant")
    try:
        state = sm.describe_endpoint(r.endpoint, r.region)
        if state.variant(r.stable_variant) is None:
            return {}  # already retired
        sm.ensure_single_variant_config(state.config_name, retire.variant, retire.config, r.region,
                                        idle=(waiting,) if waiting else (),
                                        counts={v.name: v.instance_count for v in state.variants if v.instance_count})
        scaling = _clear_scaling(services, r, state, retire.config)
        try:
            sm.update_endpoint_config(r.endpoint, retire.config, r.region)
        except sagemaker.SageMakerError as exc:
            raise sagemaker.SageMakerError(f"{exc} ({scaling})" if scaling else str(exc)) from None
    except sagemaker.SageMakerError as exc:
        return {"note": f":warning: `{r.stable_variant}` was not retired and stays on the endpoint at 0%: {exc}"}
    return {}


def _clear_scaling(services, r: Rollout, state: sagemaker.EndpointState, config: str) -> str | None:
    """Deregisters the scalable targets of the variants `config` drops; what went wrong, if anything. A failure
    does not stop the update: SageMaker refuses it only if a target is really there (a model without scaling,
    whose role may not read Application Auto Scaling at all, has none)."""
    try:
        capacity.clear_for_config(services, r.model, state, r.region, config)
    except AutoScalingError as exc:
        log.warning("rollout %s: %s", r.id, exc)
        return str(exc)
    return None


def _restore(services, r: Rollout, config: str | None) -> dict[str, str]:
    """Rolling back a finished rollout: both variants still there -> weights; otherwise the recorded config
    (variants it drops stop being scalable targets first; if that fails, UpdateEndpoint says why)."""
    sm = services.sagemaker
    state = sm.describe_endpoint(r.endpoint, r.region)
    if state.variant(r.stable_variant) and state.variant(r.candidate_variant):
        sm.set_weights(r.endpoint, r.region, {r.stable_variant: 1.0, r.candidate_variant: 0.0})
        return {}
    if not config:
        raise sagemaker.SageMakerError(
            f"SageMaker endpoint `{r.endpoint}` no longer has `{r.stable_variant}` and no earlier endpoint config "
            "was recorded; nothing was changed."
        )
    _clear_scaling(services, r, state, config)
    sm.update_endpoint_config(r.endpoint, config, r.region)
    return {"restored": config}


def _resolve_earlier_pages(services, r: Rollout) -> None:
    """A later version of the model made it to production: the pages of its earlier rollbacks are over. Only
    their state here; the delivery jobs tell Slack and PagerDuty."""
    with services.store.session() as s:
        earlier = list(s.scalars(select(Rollout.id).where(
            Rollout.model == r.model, Rollout.id < r.id, Rollout.state == RolloutState.ROLLED_BACK)))
    for rollout_id in earlier:
        try:
            pager.resolve_for_rollout(services, rollout_id, send=False)
        except Exception:
            log.exception("rollout %s: resolving the page of rollout %s failed", r.id, rollout_id)


def transition(services, rollout_id: int, make_plan, *, carry: bool = True, deliver: bool = True,
               audited: dict | None = None) -> tuple[Rollout | None, Plan | None]:
    """Reads, plans with make_plan(r) (None: nothing to do), commits (with `audited`'s row when a person acts);
    re-reads and re-plans when another process moved the rollout first. Then carries the intent out (failures
    stay owed to the controller); deliver=False leaves what it says to the delivery jobs."""
    for _ in range(COMMAND_ATTEMPTS):
        r = load(services, rollout_id)
        if r is None:
            return None, None
        plan = make_plan(r)
        if plan is None:
            return r, None
        committed = commit(services, r, plan, audited=audited)
        if committed is None:
            continue
        if carry:
            # A command waits for a controller carrying the same rollout out; the controller never waits.
            problem = carry_out(services, rollout_id, deliver=deliver,
                                wait=COMMAND_CARRY_WAIT_SECONDS if deliver else 0.0)
            if problem:
                log.warning("rollout %s: %s (owed; retried by the controller)", rollout_id, problem)
        return load(services, rollout_id), plan
    raise RolloutRefused("The rollout kept changing under this command (another worker is acting on it); "
                         "nothing was changed. Try again in a moment.")


def record_judgement(services, r: Rollout, settings: RolloutSettings, decision, stable, candidate,
                     now: datetime, *, edit: bool = True) -> None:
    """A step that only waits: the evidence is stored, and the edit of its one message (not too often) queued
    in the same transaction; the outbox delivers the newest version (a long outage owes one edit, not many)."""
    last = r.last_evidence or {}
    counts = [stable.requests, stable.errors_5xx, stable.errors_4xx,
              candidate.requests, candidate.errors_5xx, candidate.errors_4xx]
    edited_at = last.get("edited_at")
    edit_due = edit and bool(r.evidence_ts and r.thread_channel) and (
        counts != last.get("counts") or action_name(decision) != last.get("decision")) and (
        edited_at is None or (now - datetime.fromisoformat(edited_at)).total_seconds() >= EVIDENCE_EDIT_SECONDS)
    evidence = {"decision": action_name(decision).lower(), "counts": counts, "judged_at": now.isoformat(),
                "evidence": json_safe(decision.evidence),
                "edited_at": now.isoformat() if edit_due else edited_at}
    with services.store.session() as s:
        if not store.save(s, r, last_evidence=evidence):
            return  # someone else moved it: their view wins
        s.add(RolloutEvent(rollout_id=r.id, **event_row(r, "judgement", now, state=r.state, step_index=r.step_index,
                                                     decision=decision, stable=stable, candidate=candidate)))
        if edit_due:
            minutes_on_timer = (now - r.when("timer_started_at")).total_seconds() / 60 if r.timer_started_at else 0.0
            body, blocks = text.step_message(r, settings, stable=stable, candidate=candidate, decision=decision,
                                             minutes_on_timer=minutes_on_timer, judged_at=now)
            outbox.enqueue_latest(s, key=notices.key(r.id, f"evidence:{r.evidence_ts}"),
                                  subject=notices.subject(r.id), kind=notices.EDIT, channel=r.thread_channel,
                                  text=body, blocks=blocks, payload={"ts": r.evidence_ts})


def record_not_judged(services, r: Rollout, why: str, now: datetime) -> None:
    """This tick's counts were incomplete: nothing is decided, and /model status says why."""
    last = dict(r.last_evidence or {})
    last["not_judged"] = {"at": now.isoformat(), "why": why}
    with services.store.session() as s:
        store.save(s, r, last_evidence=last)


def insert_stmt(session, model):
    builder = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return builder(model.__table__)
