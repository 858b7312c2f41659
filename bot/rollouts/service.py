"""Gradual rollouts: the commands (/model promote, pause, resume, rollback, promote --force), starting a
rollout from a deploy or from Slack, and the one-line summary for /model status.

Operations return data (Outcome, ids) and raise RolloutRefused with a reason; the handlers render them. A
transition is planned in bot/rollouts/plans.py (pure, checked against bot/rollouts/states.py) and committed
and carried out by bot/rollouts/executor.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update

from bot.errors import ExternalError
from bot.integrations import sagemaker
from bot.registry import Model
from bot.rollouts import executor, notices
from bot.rollouts import messages as text
from bot.rollouts import tables as store
from bot.rollouts.executor import COMMAND_ATTEMPTS, RolloutRefused, load, settings_for, transition
from bot.rollouts.plans import plan_abort, plan_bake, plan_enter_step, plan_pause, plan_resume, plan_rollback
from bot.rollouts.states import Event, RolloutState, allows
from bot.rollouts.tables import Rollout
from bot.slack import formatting, outbox
from bot.slack.text import escape
from bot.store.base import utcnow
from bot.store.foundation import Thread, insert_ignore

log = logging.getLogger(__name__)


class RolloutNotBegun(ExternalError):
    """The rollout is recorded but its thread could not be opened yet; the controller begins it later."""


@dataclass
class Outcome:
    text: str
    rollout_id: int | None = None
    changed: bool = True
    # The action's audit row was written in its own transaction (the caller records only what changed nothing).
    audited: bool = False


def _audit(user_id: str, reason: str | None, audited: dict | None) -> dict | None:
    """audit.add's arguments for a person's action: who and why, and what the caller says (action, via, ...)."""
    return None if audited is None else dict(user_id=user_id, reason=reason, **audited)


# ---------------------------------------------------------------------------------------------------------
# Starting


def _open_thread(services, r: Rollout, model: Model) -> None:
    """A rollout started from Slack gets its own thread in the model's channel, recorded for mentions. When
    Slack does not take the first message now, it stays owed in the outbox: delivered later, it opens the
    thread then (bot/rollouts/notices.py), and the rollout does not wait for it."""
    if r.thread_ts:
        return
    body, blocks = text.parent_message(r, model, state_line=text.state_line(r))
    ts, _ = outbox.post_once(services, outbox.QUEUE, {"key": notices.parent_key(r.id)},
                             outbox.Message(channel=model.channel, text=body, blocks=blocks),
                             columns={"subject": notices.subject(r.id), "payload": notices.PARENT_ROLE})
    if ts is None:
        raise RolloutNotBegun(f"Slack did not take the rollout thread's first message in {model.channel}")
    with services.store.session() as s:
        s.execute(update(Rollout).where(Rollout.id == r.id).values(thread_channel=model.channel, thread_ts=ts))
        insert_ignore(s, Thread.__table__, {"kind": "rollout", "key": str(r.id), "model": r.model,
                                            "channel": model.channel, "ts": ts, "created_at": utcnow()},
                      ["kind", "key"])


def begin(services, rollout_id: int, now: datetime | None = None, *, deliver: bool = True,
          audited: dict | None = None) -> Rollout | None:
    """pending -> the first step (its weights, its evidence message). The traffic does not wait for Slack: a
    rollout whose thread is not open yet starts, and its thread's messages follow once the thread exists.
    deliver=False (the rollout controller): no Slack call at all; the thread's first message is queued."""
    now = now or executor.database_time(services)
    r = load(services, rollout_id)
    if r is None or r.state != RolloutState.PENDING:
        return r
    older = executor.older_traffic_owed(services, r)
    if older is not None:
        # An earlier rollout's traffic change (an abort taking its candidate to 0) comes first.
        log.warning("rollout %s waits: rollout %s still owes a traffic change", rollout_id, older)
        return r
    model = services.registry.get(r.model)
    if not r.thread_ts and model is not None:
        if deliver:
            try:
                _open_thread(services, r, model)
            except ExternalError as exc:
                log.warning("rollout %s: thread not opened yet (its messages follow once it is): %s", rollout_id,
                            exc)
        else:
            with services.store.session() as s:
                notices.queue_parent(services, s, r, model)
    settings = settings_for(services, r.model)
    r, _ = transition(services, rollout_id, lambda cur: plan_enter_step(cur, settings, 0, now, kind=Event.START)
                      if cur.state == RolloutState.PENDING else None, deliver=deliver, audited=audited)
    return r


def _new_rollout(services, model: Model, *, source: str, endpoint: str, stable: str, candidate: str,
                 run_key: str | None, started_by: str | None, channel: str | None, thread_ts: str | None,
                 previous_config: str | None, now: datetime) -> int | None:
    """Inserts the row; None when the model already has an unfinished rollout (or the run_key exists)."""
    values = dict(
        model=model.name, active_model=model.name, run_key=run_key, source=source, started_by=started_by,
        endpoint=endpoint, region=model.region, stable_variant=stable, candidate_variant=candidate,
        steps=[float(s) for s in model.rollout.steps], state=RolloutState.PENDING, step_index=0,
        previous_config=previous_config, thread_channel=channel, thread_ts=thread_ts,
        owns_parent=thread_ts is None, version=1, created_at=now, updated_at=now,
    )
    with services.store.session() as s:
        rollout_id = s.scalar(executor.insert_stmt(s, Rollout).values(**values).on_conflict_do_nothing()
                              .returning(Rollout.__table__.c.id))
        if rollout_id is None:
            return None
        if thread_ts:
            insert_ignore(s, Thread.__table__, {"kind": "rollout", "key": str(rollout_id), "model": model.name,
                                                "channel": channel, "ts": thread_ts, "created_at": now},
                          ["kind", "key"])
        return rollout_id


def start_from_deploy(services, model_name: str, *, endpoint: str, stable_variant: str, candidate_variant: str,
                      run_id: str, channel: str, thread_ts: str, now: datetime | None = None) -> int:
    """The deploy task finished: start the rollout in the run's thread. Idempotent per run_id.

    With a rollout of the model in progress (progressing, paused or baking), the deploy waits for it: it is
    recorded on that rollout (a newer deploy replaces a waiting one), its thread says so, and it starts when
    that rollout has ended, against whatever variant then serves all the traffic (start_waiting). Never a
    split no rollout owns. Returns the id of the rollout that started, or of the one it waits for.

    A rollout of the model that has not begun yet (moved no traffic) is aborted: the deploy replaces it.
    SageMaker being unreachable does not lose the rollout: it stays pending and the controller begins it.
    """
    now = now or executor.database_time(services)
    model = services.registry.get(model_name)
    if model is None:
        raise ValueError(f"model {model_name!r} is not in the models file")
    if model.endpoint and endpoint != model.endpoint:
        raise RolloutRefused(f"the deploy names endpoint `{escape(endpoint)}`, but the models file names "
                             f"`{escape(model.endpoint)}` as {escape(model_name)}'s endpoint; nothing was "
                             "started on either")
    run_key = f"{model_name}/{run_id}"
    deploy = dict(run_key=run_key, run_id=run_id, endpoint=endpoint, stable_variant=stable_variant,
                  candidate_variant=candidate_variant, channel=channel, thread_ts=thread_ts)
    for _ in range(COMMAND_ATTEMPTS):
        with services.store.session() as s:
            existing = store.by_run_key(s, run_key)
            active = store.active_for(s, model_name)
        if existing is not None:
            return existing.id
        if active is not None and active.state != RolloutState.PENDING:
            if _wait_for(services, active, deploy):
                return active.id
            continue
        if active is not None:
            transition(services, active.id, lambda cur: plan_abort(
                cur, now, reason=f"replaced by the candidate `{candidate_variant}` of Airflow run `{run_id}`")
                if cur.active_model and cur.state == RolloutState.PENDING else None)
            continue
        rollout_id = _start_deploy(services, model, deploy, stable_variant, now)
        if rollout_id is not None:
            begin(services, rollout_id, now)
            return rollout_id
    raise RolloutRefused(f"could not start the rollout of {model_name} for run {run_id}")


def _previous_config(services, endpoint: str, region: str) -> str | None:
    try:
        return services.sagemaker.describe_endpoint(endpoint, region).config_name or None
    except ExternalError as exc:
        log.warning("endpoint config of %s not recorded: %s", endpoint, exc)
        return None


def _start_deploy(services, model: Model, deploy: dict, stable: str, now: datetime) -> int | None:
    return _new_rollout(services, model, source="airflow", endpoint=deploy["endpoint"], stable=stable,
                        candidate=deploy["candidate_variant"], run_key=deploy["run_key"], started_by=None,
                        channel=deploy["channel"], thread_ts=deploy["thread_ts"],
                        previous_config=_previous_config(services, deploy["endpoint"], model.region), now=now)


def _wait_for(services, active: Rollout, deploy: dict) -> bool:
    """Records the deploy on the rollout in progress; False when that rollout moved on meanwhile (look again)."""
    earlier = active.next_deploy
    if earlier and earlier.get("run_key") == deploy["run_key"]:
        return True
    with services.store.session() as s:
        # No version bump: a deploy waiting is not a transition of this rollout.
        taken = s.execute(update(Rollout).where(Rollout.id == active.id, Rollout.active_model.is_not(None))
                          .values(next_deploy=deploy)).rowcount == 1
        if taken:
            notices.queue_waiting(s, active, deploy, replaced=earlier)
    if taken:
        log.info("rollout of %s (run %s) waits for rollout %s", active.model, deploy["run_id"], active.id)
        outbox.deliver_due(services, subject=f"waiting:{active.id}")
    return taken


def start_waiting(services, r: Rollout, now: datetime) -> int | None:
    """`r` has ended and its last traffic change is done: the deploy that waited for it starts now, against
    the variant that serves all the traffic (the one `r` promoted, or the one it rolled back to). When the
    endpoint does not allow that (the candidate is gone, or a split serves), the run's thread says why.
    Returns the new rollout's id (None when it did not start). Safe to call again: it starts once."""
    deploy = r.next_deploy
    model = services.registry.get(r.model)
    with services.store.session() as s:
        active = store.active_for(s, r.model)
    if active is not None and active.id != r.id:
        # Someone started another rollout of the model meanwhile: the deploy waits for that one instead.
        with services.store.session() as s:
            s.execute(update(Rollout).where(Rollout.id == active.id, Rollout.next_deploy.is_(None))
                      .values(next_deploy=deploy))
            s.execute(update(Rollout).where(Rollout.id == r.id).values(next_deploy=None))
        return None
    with services.store.session() as s:
        started = store.by_run_key(s, deploy["run_key"])
    why, rollout_id = None, started.id if started is not None else None
    if rollout_id is not None:
        pass  # started by an earlier call that did not get to clear next_deploy
    elif model is None:
        why = f"{r.model} is no longer in the models file."
    else:
        try:
            state = services.sagemaker.describe_endpoint(deploy["endpoint"], model.region)
            stable = _serving_alone(state, deploy["candidate_variant"])
            rollout_id = _start_deploy(services, model, deploy, stable, now)
        except (RolloutRefused, sagemaker.EndpointNotFound) as exc:
            why = str(exc)
        except ExternalError as exc:  # SageMaker unreachable: the next tick tries again
            log.warning("rollout of %s (run %s) not started yet: %s", r.model, deploy["run_id"], exc)
            return None
        if rollout_id is None and why is None:
            return None  # another rollout of the model began just now: the next tick hands the deploy to it
    with services.store.session() as s:
        s.execute(update(Rollout).where(Rollout.id == r.id).values(next_deploy=None))
        if why:
            notices.queue_not_started(s, r, deploy, why)
    if rollout_id is not None:
        begin(services, rollout_id, now, deliver=False)
    return rollout_id


def _serving_alone(state: sagemaker.EndpointState, candidate: str) -> str:
    """The variant serving all the traffic, for a waiting candidate that is on the endpoint at 0."""
    split = ", ".join(f"`{v.name}` {100 * state.share(v.name):.0f}%" for v in state.variants) or "no variants"
    cand = state.variant(candidate)
    if cand is None:
        raise RolloutRefused(f"`{escape(candidate)}` is no longer on `{escape(state.name)}` (it serves {split}).")
    if cand.current_weight > 0:
        raise RolloutRefused(f"`{escape(candidate)}` already serves traffic on `{escape(state.name)}` ({split}).")
    carrying = [v for v in state.variants if v.current_weight > 0]
    if len(carrying) != 1:
        raise RolloutRefused(f"`{escape(state.name)}` serves {split}: not one variant to compare "
                             f"`{escape(candidate)}` with.")
    return carrying[0].name


def detect_variants(state: sagemaker.EndpointState, wanted: str | None = None) -> tuple[str, str]:
    """(stable, candidate): stable carries all the traffic, candidate is the one variant at weight 0."""
    def found() -> str:
        split = ", ".join(f"`{v.name}` {100 * state.share(v.name):.0f}%" for v in state.variants) or "no variants"
        return f"Endpoint `{state.name}` has {split}."

    carrying = [v for v in state.variants if v.current_weight > 0]
    if wanted:
        if state.variant(wanted) is None:
            raise RolloutRefused(f"{found()} There is no variant `{escape(wanted)}` to promote.")
        others = [v for v in carrying if v.name != wanted]
        if len(others) != 1:
            raise RolloutRefused(f"{found()} Promoting `{escape(wanted)}` needs exactly one other variant "
                                 "carrying traffic, to compare it with.")
        return others[0].name, wanted
    idle = [v for v in state.variants if v.current_weight == 0]
    if len(carrying) == 1 and len(idle) == 1:
        return carrying[0].name, idle[0].name
    raise RolloutRefused(f"{found()} modelbot promotes when one variant carries all the traffic and one other "
                         "is at 0%. Name the candidate: `/model promote <model> --variant NAME`.")


def pick_variants(services, model: Model, variant: str | None) -> tuple[sagemaker.EndpointState, str, str]:
    """(endpoint state, stable, candidate) for a rollout started from Slack; RolloutRefused says what was found."""
    if not model.endpoint:
        raise RolloutRefused(f"*{escape(model.name)}* has no endpoint in the models file; nothing to promote.")
    state = services.sagemaker.describe_endpoint(model.endpoint, model.region)
    if variant is None:
        with services.store.session() as s:
            last = store.latest_for(s, model.name)
        # The candidate the last deploy recorded, when the endpoint still looks the way it left it.
        if last is not None and last.state != RolloutState.PROMOTED and last.endpoint == model.endpoint:
            v_stable, v_cand = state.variant(last.stable_variant), state.variant(last.candidate_variant)
            if v_stable and v_cand and v_cand.current_weight == 0 and state.share(last.stable_variant) == 1:
                return state, last.stable_variant, last.candidate_variant
    stable, candidate = detect_variants(state, variant)
    return state, stable, candidate


def _from_slack(services, model: Model, *, user_id: str, variant: str | None, now: datetime) -> int:
    """A new rollout for /model promote (or --force)."""
    state, stable, candidate = pick_variants(services, model, variant)
    rollout_id = _new_rollout(services, model, source="slack", endpoint=model.endpoint, stable=stable,
                              candidate=candidate, run_key=None, started_by=user_id, channel=None, thread_ts=None,
                              previous_config=state.config_name or None, now=now)
    if rollout_id is None:
        raise RolloutRefused(f"*{escape(model.name)}* already has a rollout in progress; see `/model status "
                             f"{escape(model.name)}`.")
    return rollout_id


def start_from_slack(services, model: Model, *, user_id: str, variant: str | None = None,
                     now: datetime | None = None, audited: dict | None = None, reason: str | None = None) -> Outcome:
    """/model promote: resumes a paused rollout, or starts one, with its own thread in the model's channel."""
    now = now or executor.database_time(services)
    with services.store.session() as s:
        active = store.active_for(s, model.name)
    if active is not None:
        if active.state == RolloutState.PAUSED:
            return resume(services, model, user_id=user_id, now=now, audited=audited, reason=reason)
        raise RolloutRefused(f"*{escape(model.name)}* is already being rolled out: "
                             f"{text.summary_line(active, model.rollout, now)}")
    rollout_id = _from_slack(services, model, user_id=user_id, variant=variant, now=now)
    r = begin(services, rollout_id, now, audited=_audit(user_id, reason, audited))
    if r.state == RolloutState.PENDING:
        return Outcome(f":hourglass: Rollout of *{escape(model.name)}* recorded; an earlier rollout's traffic "
                       "change comes first, so it begins on the worker's next pass.", rollout_id=rollout_id)
    link = text.thread_link(r.thread_channel, r.thread_ts)
    where = (f" Evidence in the <{link}|rollout thread>." if link else
             f" Slack did not take the rollout thread's first message yet; the thread opens in "
             f"<#{model.channel}> when it does.")
    return Outcome(
        f":rocket: Rollout of *{escape(model.name)}* started: `{escape(r.candidate_variant)}` replacing "
        f"`{escape(r.stable_variant)}` on `{escape(r.endpoint)}`, first step "
        f"{formatting.percent(r.steps[0])}." + where,
        rollout_id=rollout_id, audited=audited is not None,
    )


# ---------------------------------------------------------------------------------------------------------
# Commands


def _active_or_refuse(services, model: Model, doing: str) -> Rollout:
    with services.store.session() as s:
        active = store.active_for(s, model.name)
    if active is None:
        raise RolloutRefused(f"*{escape(model.name)}* has no rollout in progress to {doing}.")
    return active


def pause(services, model: Model, *, user_id: str, reason: str | None = None, now: datetime | None = None,
          audited: dict | None = None) -> Outcome:
    now = now or executor.database_time(services)
    active = _active_or_refuse(services, model, "pause")
    why = reason or "paused by hand"
    r, plan = transition(services, active.id, lambda cur: plan_pause(
        cur, settings_for(services, cur.model), now, actor=user_id, reason=why)
        if allows(cur.state, Event.PAUSE) else None, audited=_audit(user_id, reason, audited))
    if plan is None:
        return Outcome(f"The rollout of *{escape(model.name)}* is already {r.state if r else 'gone'}.",
                       rollout_id=active.id, changed=False)
    return Outcome(f":double_vertical_bar: Paused the rollout of *{escape(model.name)}* at "
                   f"{formatting.percent(r.percent)}. Traffic stays as it is; `/model resume {escape(model.name)}` "
                   "continues.", rollout_id=r.id, audited=audited is not None)


def resume(services, model: Model, *, user_id: str, now: datetime | None = None, audited: dict | None = None,
           reason: str | None = None) -> Outcome:
    now = now or executor.database_time(services)
    active = _active_or_refuse(services, model, "resume")
    r, plan = transition(services, active.id, lambda cur: plan_resume(
        cur, settings_for(services, cur.model), now, actor=user_id) if allows(cur.state, Event.RESUME) else None,
        audited=_audit(user_id, reason, audited))
    if plan is None:
        return Outcome(f"The rollout of *{escape(model.name)}* is not paused (it is {r.state if r else 'gone'}).",
                       rollout_id=active.id, changed=False)
    return Outcome(f":arrow_forward: Resumed the rollout of *{escape(model.name)}* at {formatting.percent(r.percent)}.",
                   rollout_id=r.id, audited=audited is not None)


def rollback_target(services, model: Model) -> tuple[Rollout | None, str]:
    """What /model rollback would do, for the confirm question: (the rollout acted on, a description)."""
    with services.store.session() as s:
        active = store.active_for(s, model.name)
        last = store.latest_for(s, model.name)
    if active is not None:
        return active, (f"All traffic on `{escape(active.endpoint)}` goes back to "
                        f"`{escape(active.stable_variant)}` (`{escape(active.candidate_variant)}` to 0%), "
                        "the rollout ends and on-call is paged.")
    if last is not None and last.state == RolloutState.PROMOTED:
        if last.previous_config:
            return last, (f"`{escape(last.endpoint)}` goes back to `{escape(last.stable_variant)}` "
                          f"(its endpoint config before the rollout, `{escape(last.previous_config)}`, "
                          "if the variant is no longer on the endpoint), and on-call is paged.")
        return last, (f"All traffic on `{escape(last.endpoint)}` goes back to "
                      f"`{escape(last.stable_variant)}` if it is still on the endpoint; on-call is paged.")
    return None, ""


def rollback(services, model: Model, *, user_id: str, reason: str | None = None, rollout_id: int | None = None,
             now: datetime | None = None, audited: dict | None = None) -> Outcome:
    """/model rollback: the unfinished rollout goes back to its stable variant; with none, the last promoted one
    goes back to what the endpoint had before it. Pages either way (the page is written with the rollback)."""
    now = now or executor.database_time(services)
    target, _ = rollback_target(services, model)
    if rollout_id is not None and (target is None or target.id != rollout_id):
        # A confirm button from an earlier prompt: it was about a rollout that has ended since.
        return Outcome("That rollout is over; nothing was changed. See `/model status "
                       f"{escape(model.name)}`.", changed=False)
    if target is None:
        state_note = ""
        if model.endpoint:
            try:
                state = services.sagemaker.describe_endpoint(model.endpoint, model.region)
                state_note = f" The endpoint serves {formatting.split_line(state)}."
            except ExternalError:
                pass
        return Outcome(f"Nothing to roll back to: *{escape(model.name)}* has no rollout in progress and no "
                       f"earlier endpoint config is recorded.{state_note}", changed=False)
    why = reason or "no reason given"
    r, plan = transition(services, target.id, lambda cur: plan_rollback(
        cur, settings_for(services, cur.model), now, automatic=False, actor=user_id, reason=why)
        if allows(cur.state, Event.ROLLBACK) else None, audited=_audit(user_id, reason, audited))
    if plan is None:
        return Outcome(f"The rollout of *{escape(model.name)}* was already {r.state if r else 'gone'}; "
                       "nothing was changed.", changed=False)
    owed = f"\n:warning: Still owed, retried every pass: {escape(r.last_error)}" if r.pending and r.last_error else ""
    if plan.intent.restore:
        done = f"`{escape(r.endpoint)}` is going back to `{escape(r.stable_variant)}`"
    else:
        done = f"All traffic on `{escape(r.endpoint)}` is back on `{escape(r.stable_variant)}`"
    return Outcome(f":rewind: Rolled back *{escape(model.name)}*: {done}. On-call has been paged.{owed}",
                   rollout_id=r.id, audited=audited is not None)


def force_promote(services, model: Model, *, user_id: str, reason: str | None = None, variant: str | None = None,
                  now: datetime | None = None, audited: dict | None = None) -> Outcome:
    """/model promote --force: 100% to the candidate now, announced in the thread and the alert channel."""
    now = now or executor.database_time(services)
    with services.store.session() as s:
        active = store.active_for(s, model.name)
    if active is None:
        rollout_id = _from_slack(services, model, user_id=user_id, variant=variant, now=now)
        try:
            _open_thread(services, load(services, rollout_id), model)
        except ExternalError as exc:  # the forced promotion is not held up by Slack: the alert still goes out
            log.warning("rollout %s: thread not opened: %s", rollout_id, exc)
    else:
        rollout_id = active.id
    r, plan = transition(services, rollout_id, lambda cur: plan_bake(
        cur, settings_for(services, cur.model), now, forced_by=user_id, reason=reason)
        if allows(cur.state, Event.FORCED) else None, audited=_audit(user_id, reason, audited))
    if plan is None:
        return Outcome(f"The rollout of *{escape(model.name)}* is already {r.state if r else 'gone'}; "
                       "nothing was changed.", rollout_id=rollout_id, changed=False)
    owed = f"\n:warning: Still owed, retried every pass: {escape(r.last_error)}" if r.pending and r.last_error else ""
    return Outcome(f":warning: Forced promotion of *{escape(model.name)}*: `{escape(r.candidate_variant)}` "
                   f"takes 100% of `{escape(r.endpoint)}` now. Announced in the thread and the alert channel."
                   f"{owed}", rollout_id=r.id, audited=audited is not None)


# ---------------------------------------------------------------------------------------------------------
# Status


def rollout_summary(services, model: Model) -> str | None:
    """One mrkdwn line about the model's latest rollout, for /model status; None when it never had one."""
    with services.store.session() as s:
        r = store.active_for(s, model.name) or store.latest_for(s, model.name)
    if r is None:
        return None
    return text.summary_line(r, model.rollout, executor.database_time(services))