"""Gradual rollouts: the state machine, and the service the controller, the commands and the run watcher call.

    pending -> progressing(step i) -> ... -> baking -> promoted
    (any unfinished state) -> paused -> (back where it was)
    (any unfinished state, or promoted) -> rolled_back;  (unfinished) -> aborted

A transition is made in two halves:
- `plan_*` (pure): from the rollout as read, the new column values and the intent -- the endpoint weights
  the new state wants, a config move, the page, the Slack messages -- as one Plan.
- `commit()` writes values and intent in one optimistic UPDATE (WHERE version = ?), before anything happens
  outside; `carry_out()` then does the intent part by part, every part idempotent, and clears it.
A worker killed anywhere in between leaves the intent in the row; the next pass finds it and finishes it:
weights are compared with the endpoint's before they are set, Slack messages are claimed in
rollout_messages before they are posted, and the pager opens one page per rollout however often it is called.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.rollouts import messages as text
from bot.integrations import sagemaker
from bot.chart_loading import load as load_chart_module
from bot.errors import ExternalError
from bot.registry import Model, RolloutSettings
from bot.rollouts import tables as store
from bot.store.base import as_utc, utcnow
from bot.store.foundation import Thread, insert_ignore
from bot.rollouts.tables import Rollout, RolloutEvent, RolloutMessage

log = logging.getLogger(__name__)

# Test hook: the worker dies (as if killed) at the named point: after_intent, after_aws, after_post.
CRASH_ENV = "MODELBOT_CRASH_AT"
CRASH_EXIT_CODE = 86
# A message claimed this long ago without a ts had a poster that died (Slack's timeout with its retries is
# far shorter); the next executor looks for it in the thread and posts it only if it is not there.
CLAIM_STALE_SECONDS = 120
# While a step only waits, its message is edited at most this often (chat.update is rate limited per workspace).
EVIDENCE_EDIT_SECONDS = 60
COMMAND_ATTEMPTS = 5


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        log.error("crash injected at %s (%s is set)", name, CRASH_ENV)
        os._exit(CRASH_EXIT_CODE)


class RolloutRefused(Exception):
    """The rollout command cannot be done as asked; the message (mrkdwn, escaped) says why and what to do."""


@dataclass
class Outcome:
    text: str
    rollout_id: int | None = None
    changed: bool = True


@dataclass
class Plan:
    kind: str  # the event kind: start, shift, bake, promoted, rollback, pause, resume, forced, aborted
    values: dict[str, Any]
    intent: dict[str, Any]
    event: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------
# Small pure helpers


def settings_for(services, model_name: str) -> RolloutSettings:
    model = services.registry.get(model_name)
    return model.rollout if model else RolloutSettings()


def weights_at(r: Rollout, percent: float) -> dict[str, float]:
    share = round(percent / 100.0, 6)
    return {r.stable_variant: round(1.0 - share, 6), r.candidate_variant: share}


def view(r: Rollout, **changes: Any) -> Rollout:
    """A detached copy of the row with some columns changed: what a message about the new state renders."""
    values = {c.key: getattr(r, c.key) for c in Rollout.__table__.columns}
    values.update(changes)
    return Rollout(**values)


def json_safe(value: Any) -> Any:
    """Evidence for JSON columns: dataclasses and tuples unpacked, enums by name, non-finite floats as None
    (PostgreSQL's JSON has no Infinity or NaN)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_safe(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def action_name(decision) -> str:
    action = decision.action
    return (getattr(action, "name", None) or str(action)).upper()


def _counts_columns(stable, candidate) -> dict[str, int | None]:
    return {
        "stable_requests": stable.requests if stable else None,
        "stable_5xx": stable.errors_5xx if stable else None,
        "stable_4xx": stable.errors_4xx if stable else None,
        "candidate_requests": candidate.requests if candidate else None,
        "candidate_5xx": candidate.errors_5xx if candidate else None,
        "candidate_4xx": candidate.errors_4xx if candidate else None,
    }


def _event(r: Rollout, kind: str, now: datetime, *, state: str, step_index: int, decision=None, stable=None,
           candidate=None, actor: str | None = None, **detail: Any) -> dict[str, Any]:
    percent = float(r.steps[min(step_index, len(r.steps) - 1)]) if state != "rolled_back" else 0.0
    evidence = getattr(decision, "evidence", None)
    if evidence is not None:
        detail["evidence"] = json_safe(evidence)
    if decision is not None:
        detail["failing"] = getattr(decision, "failing", None)
    return dict(
        at=now, kind=kind, state=state, step_index=step_index, candidate_percent=percent,
        decision=action_name(decision).lower() if decision is not None else None,
        actor=actor, detail=json_safe(detail), **_counts_columns(stable, candidate),
    )


def _thread_post(key: str, rendered: tuple[str, list[dict]], *, broadcast: bool = False,
                 role: str | None = None) -> dict:
    body, blocks = rendered
    return {"key": key, "thread": True, "text": body, "blocks": blocks, "broadcast": broadcast, "role": role}


def _final_update(r: Rollout, settings: RolloutSettings, now: datetime, *, decision, stable, candidate,
                  outcome: str, final_line: str) -> list[dict]:
    """The closing edit of the step's evidence message: the last counts and what was decided."""
    if not r.evidence_ts or not r.thread_channel:
        return []
    body, blocks = text.step_message(r, settings, stable=stable, candidate=candidate, decision=decision,
                                     outcome=outcome, final_line=final_line, judged_at=now)
    return [{"channel": r.thread_channel, "ts": r.evidence_ts, "text": body, "blocks": blocks}]


def _close_pause(r: Rollout, outcome: str) -> list[dict]:
    if r.state != "paused" or not r.pause_ts or not r.thread_channel:
        return []
    body, blocks = text.pause_closed_message(r, outcome=outcome)
    return [{"channel": r.thread_channel, "ts": r.pause_ts, "text": body, "blocks": blocks}]


def retire_config_name(r: Rollout) -> str:
    """A name for the endpoint config that serves only the candidate: unique per rollout, SageMaker's rules."""
    suffix = f"-r{r.id}"
    base = re.sub(r"[^A-Za-z0-9-]+", "-", f"{r.endpoint}-{r.candidate_variant}").strip("-")
    return (base[: 63 - len(suffix)].rstrip("-") or "modelbot") + suffix


# ---------------------------------------------------------------------------------------------------------
# Plans (pure)


def plan_enter_step(r: Rollout, settings: RolloutSettings, index: int, now: datetime, *, kind: str,
                    decision=None, stable=None, candidate=None) -> Plan:
    """Move to step `index` (the first one when starting); a step at 100% is the promotion: baking."""
    percent = float(r.steps[index])
    if percent >= 100:
        return plan_bake(r, settings, now, decision=decision, stable=stable, candidate=candidate)
    nxt = view(r, state="progressing", step_index=index, step_started_at=now, timer_started_at=now,
               evidence_ts=None)
    updates = _final_update(r, settings, now, decision=decision, stable=stable, candidate=candidate,
                            outcome=f"shift to {text.percent(percent)}",
                            final_line=f"*Next:* step {index + 1} at {text.percent(percent)}, below.")
    return Plan(
        kind=kind,
        values=dict(state="progressing", step_index=index, step_started_at=now, timer_started_at=now,
                    target_weights=weights_at(r, percent), resume_state=None, paused_reason=None,
                    evidence_ts=None, last_evidence=None),
        intent=dict(kind=kind, weights=True, updates=updates, chart=kind == "shift", parent=True,
                    posts=[_thread_post("step", text.step_message(nxt, settings), role="evidence")]),
        event=_event(r, kind, now, state="progressing", step_index=index, decision=decision, stable=stable,
                     candidate=candidate, label=text.percent(percent)),
    )


def plan_bake(r: Rollout, settings: RolloutSettings, now: datetime, *, decision=None, stable=None, candidate=None,
              forced_by: str | None = None, reason: str | None = None) -> Plan:
    last = len(r.steps) - 1
    nxt = view(r, state="baking", step_index=last, step_started_at=now)
    kind = "forced" if forced_by else "bake"
    updates = _final_update(r, settings, now, decision=decision, stable=stable, candidate=candidate,
                            outcome="promote to 100%", final_line="*Next:* baking, below.")
    updates += _close_pause(r, f"Forced to 100% by {text.mention(forced_by)}." if forced_by else "Promoted.")
    posts = [_thread_post("baking", text.baking_message(nxt, settings, forced_by=forced_by, reason=reason),
                          broadcast=bool(forced_by), role="evidence")]
    intent = dict(kind=kind, weights=True, updates=updates, posts=posts, chart=True, parent=True)
    if forced_by:
        intent["alert"] = {"actor": forced_by, "reason": reason}
    return Plan(
        kind=kind,
        values=dict(state="baking", step_index=last, step_started_at=now, timer_started_at=now,
                    target_weights={r.stable_variant: 0.0, r.candidate_variant: 1.0}, resume_state=None,
                    paused_reason=None, evidence_ts=None),
        intent=intent,
        event=_event(r, kind, now, state="baking", step_index=last, decision=decision, stable=stable,
                     candidate=candidate, actor=forced_by, reason=reason, label="forced 100%" if forced_by else "100%"),
    )


def plan_finish_bake(r: Rollout, now: datetime) -> Plan:
    name = retire_config_name(r)
    return Plan(
        kind="promoted",
        values=dict(state="promoted", active_model=None, ended_at=now, target_weights=None, final_config=name),
        intent=dict(kind="promoted", weights=False, retire={"variant": r.candidate_variant, "config": name},
                    updates=[], posts=[{"key": "promoted", "thread": True, "render": "promoted", "role": None}],
                    chart=True, parent=True, resolve_earlier=True),
        event=_event(r, "promoted", now, state="promoted", step_index=r.step_index, label="baked"),
    )


def plan_rollback(r: Rollout, settings: RolloutSettings, now: datetime, *, automatic: bool, actor: str | None,
                  reason: str, decision=None, stable=None, candidate=None) -> Plan:
    restore = r.state == "promoted"
    updates = _final_update(r, settings, now, decision=decision, stable=stable, candidate=candidate,
                            outcome="roll back", final_line="*Next:* rolled back, below.") if decision else []
    updates += _close_pause(r, f"Rolled back by {text.mention(actor)}." if actor else
                            "Rolled back automatically: the candidate was shown to be worse.")
    posts = [{"key": "rollback", "thread": True, "render": "rollback", "broadcast": True, "role": None}]
    intent = dict(kind="rollback", weights=not restore, updates=updates, posts=posts, chart=not restore,
                  parent=True, page={"reason": reason, "automatic": automatic, "actor": actor})
    if restore:
        intent["restore"] = {"config": r.previous_config}
    return Plan(
        kind="rollback",
        values=dict(state="rolled_back", active_model=None, ended_at=now, ended_by=actor, ended_reason=reason,
                    target_weights=None if restore else {r.stable_variant: 1.0, r.candidate_variant: 0.0},
                    resume_state=None),
        intent=intent,
        event=_event(r, "rollback", now, state="rolled_back", step_index=r.step_index, decision=decision,
                     stable=stable, candidate=candidate, actor=actor, reason=reason, automatic=automatic,
                     label="manual" if actor else "automatic"),
    )


def plan_pause(r: Rollout, settings: RolloutSettings, now: datetime, *, actor: str | None, reason: str,
               decision=None, stable=None, candidate=None) -> Plan:
    updates = _final_update(r, settings, now, decision=decision, stable=stable, candidate=candidate,
                            outcome="pause", final_line="*Next:* paused, below.") if decision else []
    return Plan(
        kind="pause",
        values=dict(state="paused", resume_state=r.state, paused_reason=reason),
        intent=dict(kind="pause", weights=True, updates=updates, chart=decision is not None, parent=True,
                    posts=[{"key": "pause", "thread": True, "render": "pause", "role": "pause",
                            "actor": actor, "reason": reason}]),
        event=_event(r, "pause", now, state="paused", step_index=r.step_index, decision=decision, stable=stable,
                     candidate=candidate, actor=actor, reason=reason, label="asks a human" if not actor else "by hand"),
    )


def plan_resume(r: Rollout, settings: RolloutSettings, now: datetime, *, actor: str | None) -> Plan:
    state = r.resume_state or "progressing"
    nxt = view(r, state=state, timer_started_at=now, paused_reason=None)
    updates = _close_pause(r, f"Continued by {text.mention(actor)}." if actor else "Continued.")
    posts = [_thread_post("resumed", text.resumed_message(nxt, actor=actor))]
    if state == "progressing" and r.evidence_ts and r.thread_channel:
        body, blocks = text.step_superseded(r)
        updates.append({"channel": r.thread_channel, "ts": r.evidence_ts, "text": body, "blocks": blocks})
    values = dict(state=state, resume_state=None, paused_reason=None, timer_started_at=now, pause_ts=None)
    if state == "progressing":
        # A fresh evidence message below the pause: the old one is up the thread, out of sight.
        posts.append(_thread_post("step", text.step_message(nxt, settings), role="evidence"))
        values["evidence_ts"] = None
    return Plan(
        kind="resume",
        values=values,
        intent=dict(kind="resume", weights=True, updates=updates, posts=posts, chart=False, parent=True),
        event=_event(r, "resume", now, state=state, step_index=r.step_index, actor=actor, label=""),
    )


def plan_abort(r: Rollout, now: datetime, *, reason: str, actor: str | None = None) -> Plan:
    nxt = view(r, state="aborted", ended_reason=reason)
    return Plan(
        kind="aborted",
        values=dict(state="aborted", active_model=None, ended_at=now, ended_by=actor, ended_reason=reason,
                    target_weights=None, resume_state=None),
        intent=dict(kind="aborted", weights=False, updates=_close_pause(r, "Aborted."), chart=False, parent=True,
                    posts=[_thread_post("aborted", text.aborted_message(nxt, reason=reason))]),
        event=_event(r, "aborted", now, state="aborted", step_index=r.step_index, actor=actor, reason=reason),
    )


def plan_judgement(r: Rollout, settings: RolloutSettings, decision, stable, candidate, now: datetime) -> Plan | None:
    """What a judgement means for a progressing (or paused) rollout; None: it only waits."""
    action = action_name(decision)
    if action == "ROLLBACK":
        return plan_rollback(r, settings, now, automatic=True, actor=None,
                             reason=rollback_reason(r, decision, settings.alpha),
                             decision=decision, stable=stable, candidate=candidate)
    if r.state == "paused":
        return None  # held by a human: only a candidate shown to be worse moves it
    if action == "SHIFT":
        return plan_enter_step(r, settings, r.step_index + 1, now, kind="shift", decision=decision,
                               stable=stable, candidate=candidate)
    if action == "PAUSE":
        # Short, for the status line; the judgement's full reason goes into the step's final evidence.
        reason = f"still undecided after {text.minutes(settings.max_step_minutes)} at {text.percent(r.percent)}"
        return plan_pause(r, settings, now, actor=None, reason=reason, decision=decision, stable=stable,
                          candidate=candidate)
    return None


def rollback_reason(r: Rollout, decision, alpha: float) -> str:
    """One sentence for the page, the status line and the rollback message (the step's evidence message
    keeps the judgement's full reasoning)."""
    ev = decision.evidence
    failing = (getattr(decision, "failing", None) or "5xx").lower()
    cand = getattr(ev, f"candidate_rate_{failing}", None)
    stab = getattr(ev, f"stable_rate_{failing}", None)
    stat = getattr(ev, f"statistic_{failing}", None)
    why = (f"candidate `{r.candidate_variant}` {failing.upper()} rate {text.rate(cand)} vs stable {text.rate(stab)} "
           f"at {text.percent(r.percent)} of traffic: shown worse at α {alpha:g}")
    threshold = getattr(ev, "threshold", None)
    if isinstance(stat, (int, float)) and isinstance(threshold, (int, float)):
        why += f" (evidence {text.big(stat)} ≥ {threshold:g})"
    return why


# ---------------------------------------------------------------------------------------------------------
# Committing and carrying out


def commit(services, r: Rollout, plan: Plan) -> Rollout | None:
    """Writes the plan if the row is still the version that was read; None when someone else moved it first."""
    intent = dict(plan.intent, id=f"{r.id}.{r.version + 1}")
    with services.store.session() as s:
        if not store.save(s, r, **plan.values, pending=intent, last_error=None):
            return None
        s.add(RolloutEvent(rollout_id=r.id, **plan.event))
    crash_point("after_intent")
    with services.store.session() as s:
        return store.get(s, r.id)


def load(services, rollout_id: int) -> Rollout | None:
    with services.store.session() as s:
        return store.get(s, rollout_id)


def carry_out(services, rollout_id: int) -> str | None:
    """Does the rollout's pending intent; None when it is done (or there was none), else what is still owed.

    An intent that a newer transition replaced is not finished: the newer one is carried out instead (its
    weights include everything the endpoint should now have).
    """
    problem = None
    for _ in range(COMMAND_ATTEMPTS):
        r = load(services, rollout_id)
        if r is None or r.pending is None:
            return problem
        problem, finished = _carry_out_once(services, r)
        if not finished:
            return problem
    return problem


def _carry_out_once(services, r: Rollout) -> tuple[str | None, bool]:
    """One attempt; (what is still owed or None, whether to look at the row again)."""
    intent = r.pending
    problems: list[str] = []
    aws_ok = True
    aws: dict[str, str] = {}
    try:
        aws = _aws_part(services, r, intent)
    except (sagemaker.EndpointNotFound, sagemaker.VariantNotFound) as exc:
        if intent.get("kind") not in ("rollback", "promoted", "aborted"):
            # The endpoint or a variant is gone: this rollout cannot go on. Its abort replaces the intent.
            commit(services, r, plan_abort(r, utcnow(), reason=str(exc)))
            return None, True
        aws = {"note": f":warning: {exc}"}
    except sagemaker.SageMakerError as exc:
        aws_ok = False
        problems.append(str(exc))
    crash_point("after_aws")
    if intent.get("page"):
        try:
            _page(services, r, intent["page"])
        except Exception as exc:  # the pager keeps what it owes; the intent keeps asking until it has the page
            log.exception("rollout %s: paging failed", r.id)
            problems.append(f"the page was not sent ({type(exc).__name__}: {exc})")
    if not _still_current(services, r):
        return None, True  # replaced by a newer transition: carry that one out instead
    if aws_ok:
        problems += _slack_part(services, r, intent, aws)
        if intent.get("resolve_earlier"):
            _resolve_earlier_pages(services, r)
    else:
        # Said once per intent: the thread learns the change is owed, not every 30 s.
        rendered = text.failure_notice(_what(intent, r), problems[0])
        _post_once(services, r, f"{intent['id']}:failed", r.thread_channel, r.thread_ts, rendered)
    if problems:
        _record_error(services, r, "; ".join(problems))
        return "; ".join(problems), False
    _clear(services, r)
    return None, True


def _what(intent: dict, r: Rollout) -> str:
    kind = intent.get("kind")
    if kind == "rollback":
        return f"The rollback of `{r.endpoint}`"
    if kind == "promoted":
        return f"Retiring `{r.stable_variant}` from `{r.endpoint}`"
    return f"Setting the traffic split of `{r.endpoint}`"


def _aws_part(services, r: Rollout, intent: dict) -> dict[str, str]:
    """Brings the endpoint where the intent wants it. Returns what the message should say beyond the plan:
    {"restored": config} when a config was restored, {"note": text} when something was left undone."""
    if intent.get("restore") is not None:
        return _restore(r, intent["restore"].get("config"))
    if intent.get("weights") and r.target_weights:
        _converge_weights(services, r)
    if intent.get("retire"):
        return _retire(r, intent["retire"])
    return {}


def _converge_weights(services, r: Rollout) -> None:
    """Sets the target weights, then reads the target again: if a newer transition changed it meanwhile,
    its weights are set too, so the endpoint always ends on the latest target whoever finishes last."""
    target = r.target_weights
    for _ in range(3):
        sagemaker.set_weights(r.endpoint, r.region, target)
        latest = load(services, r.id)
        if latest is None or not latest.target_weights or latest.target_weights == target:
            return
        target = latest.target_weights


def _retire(r: Rollout, retire: dict) -> dict[str, str]:
    """After baking: the endpoint moves to a config serving only the candidate (the old variant's instances
    go away). Best effort: if it fails, the old variant simply stays at 0%, which is safe; the thread says so."""
    try:
        state = sagemaker.describe_endpoint(r.endpoint, r.region)
        if state.variant(r.stable_variant) is None:
            return {}  # already retired
        sagemaker.ensure_single_variant_config(state.config_name, retire["variant"], retire["config"], r.region)
        sagemaker.update_endpoint_config(r.endpoint, retire["config"], r.region)
    except sagemaker.SageMakerError as exc:
        return {"note": f":warning: `{r.stable_variant}` was not retired and stays on the endpoint at 0%: {exc}"}
    return {}


def _restore(r: Rollout, config: str | None) -> dict[str, str]:
    """Rolling back a finished rollout: both variants still there -> weights; otherwise the recorded config."""
    state = sagemaker.describe_endpoint(r.endpoint, r.region)
    if state.variant(r.stable_variant) and state.variant(r.candidate_variant):
        sagemaker.set_weights(r.endpoint, r.region, {r.stable_variant: 1.0, r.candidate_variant: 0.0})
        return {}
    if not config:
        raise sagemaker.SageMakerError(
            f"SageMaker endpoint `{r.endpoint}` no longer has `{r.stable_variant}` and no earlier endpoint config "
            "was recorded; nothing was changed."
        )
    sagemaker.update_endpoint_config(r.endpoint, config, r.region)
    return {"restored": config}


def _page(services, r: Rollout, page: dict) -> None:
    from bot.paging import service as pager

    pager.page_rollback(
        services, model_name=r.model, rollout_id=r.id, reason=page["reason"], channel=r.thread_channel,
        thread_ts=r.thread_ts, automatic=page["automatic"], actor=page.get("actor"),
    )


def _resolve_earlier_pages(services, r: Rollout) -> None:
    """A later version of the model made it to production: the pages of its earlier rollbacks are over."""
    from bot.paging import service as pager

    with services.store.session() as s:
        earlier = list(s.scalars(select(Rollout.id).where(
            Rollout.model == r.model, Rollout.id < r.id, Rollout.state == "rolled_back")))
    for rollout_id in earlier:
        try:
            pager.resolve_for_rollout(services, rollout_id)
        except Exception:
            log.exception("rollout %s: resolving the page of rollout %s failed", r.id, rollout_id)


def _still_current(services, r: Rollout) -> bool:
    latest = load(services, r.id)
    return latest is not None and (latest.pending or {}).get("id") == r.pending["id"]


def _render_post(services, r: Rollout, post: dict, aws: dict[str, str]) -> tuple[str, list[dict]]:
    render = post.get("render")
    model = services.registry.get(r.model)
    if render == "rollback":
        page = r.pending.get("page") or {}
        return text.rollback_message(r, model or _fallback_model(services, r), automatic=page.get("automatic", False),
                                     actor=page.get("actor"), reason=page.get("reason", ""),
                                     restored_config=aws.get("restored"), note=aws.get("note"))
    if render == "promoted":
        retired = None if aws.get("note") else r.final_config
        return text.promoted_message(r, retired_config=retired, note=aws.get("note"))
    if render == "pause":
        return text.pause_message(r, model or _fallback_model(services, r), actor=post.get("actor"),
                                  reason=post.get("reason", ""))
    return post["text"], post["blocks"]


def _fallback_model(services, r: Rollout) -> Model:
    from bot.registry import ModelSpec

    return Model(name=r.model, spec=ModelSpec(channel=r.thread_channel or "C0UNKNOWN"),
                 defaults=services.registry.defaults)


def _slack_part(services, r: Rollout, intent: dict, aws: dict[str, str]) -> list[str]:
    problems: list[str] = []
    client = services.slack
    for upd in intent.get("updates", []):
        try:
            client.chat_update(channel=upd["channel"], ts=upd["ts"], text=upd["text"], blocks=upd["blocks"])
        except SlackApiError as exc:
            if exc.response.get("error") not in ("message_not_found", "cant_update_message", "channel_not_found"):
                problems.append(f"Slack did not update message {upd['ts']} ({exc.response.get('error')})")
        except SlackClientError as exc:
            problems.append(f"Slack could not be reached to update a message ({exc})")
    if intent.get("chart"):
        # Before the new step's message, so the message that keeps changing stays at the bottom of the thread.
        _post_chart(services, r, intent)
    for post in intent.get("posts", []):
        channel, thread_ts = (r.thread_channel, r.thread_ts) if post.get("thread") else (post["channel"], None)
        if not channel:
            continue
        rendered = _render_post(services, r, post, aws)
        try:
            ts = _post_once(services, r, f"{intent['id']}:{post['key']}", channel, thread_ts, rendered,
                            broadcast=post.get("broadcast", False))
        except ExternalError as exc:
            problems.append(str(exc))
            continue
        if ts is None:
            problems.append("a message is being posted by another worker")
    if intent.get("alert"):
        problems += _alert(services, r, intent)
    if intent.get("parent") and r.owns_parent:
        _refresh_parent(services, r)
    return problems


def _alert(services, r: Rollout, intent: dict) -> list[str]:
    model = services.registry.get(r.model)
    channel = model.alert_channel if model else services.registry.defaults.alert_channel
    if not channel:
        return []
    alert = intent["alert"]
    rendered = text.forced_alert(r, model or _fallback_model(services, r), actor=alert["actor"],
                                 reason=alert.get("reason"), thread_link=text.thread_link(r.thread_channel, r.thread_ts))
    try:
        _post_once(services, r, f"{intent['id']}:alert", channel, None, rendered)
    except ExternalError as exc:
        return [str(exc)]
    return []


def _refresh_parent(services, r: Rollout) -> None:
    model = services.registry.get(r.model) or _fallback_model(services, r)
    body, blocks = text.parent_message(r, model, state_line=text.state_line(r))
    try:
        services.slack.chat_update(channel=r.thread_channel, ts=r.thread_ts, text=body, blocks=blocks)
    except (SlackApiError, SlackClientError) as exc:
        log.warning("rollout %s: the thread's parent message was not updated: %s", r.id, exc)


class SlackPostError(ExternalError):
    pass


def _post_once(services, r: Rollout, key: str, channel: str | None, thread_ts: str | None,
               rendered: tuple[str, list[dict]], *, broadcast: bool = False) -> str | None:
    """Posts a message exactly once per key; returns its ts, or None while another worker is posting it."""
    if not channel:
        return None
    now = utcnow()
    with services.store.session() as s:
        mine = _claim(s, rollout_id=r.id, key=key, channel=channel, ts=None, claimed_at=now)
    if not mine:
        with services.store.session() as s:
            row = s.scalars(select(RolloutMessage).where(RolloutMessage.rollout_id == r.id,
                                                         RolloutMessage.key == key)).one()
        if row.ts:
            return row.ts
        # Claimed earlier: by a live poster (leave it) or a dead one (look for its message first).
        if now - as_utc(row.claimed_at) < timedelta(seconds=CLAIM_STALE_SECONDS):
            return None
        found = _find_posted(services, channel, thread_ts, r.id, key)
        if found:
            _record_ts(services, r.id, key, found)
            return found
        with services.store.session() as s:  # take the claim over; one taker wins
            won = s.execute(update(RolloutMessage).where(
                RolloutMessage.rollout_id == r.id, RolloutMessage.key == key, RolloutMessage.ts.is_(None),
                RolloutMessage.claimed_at == row.claimed_at).values(claimed_at=now)).rowcount == 1
        if not won:
            return None
    body, blocks = rendered
    kwargs = dict(channel=channel, text=body, blocks=blocks, unfurl_links=False,
                  metadata={"event_type": "modelbot_rollout", "event_payload": {"rollout_id": r.id, "key": key}})
    if thread_ts:
        kwargs.update(thread_ts=thread_ts, reply_broadcast=broadcast)
    try:
        ts = services.slack.chat_postMessage(**kwargs)["ts"]
    except SlackApiError as exc:
        _release_claim(services, r.id, key)
        raise SlackPostError(f"Slack refused a rollout message for channel {channel} "
                             f"({exc.response.get('error')}); it is posted on the next pass") from None
    except SlackClientError as exc:
        _release_claim(services, r.id, key)
        raise SlackPostError(f"Slack could not be reached to post a rollout message ({exc}); "
                             "it is posted on the next pass") from None
    crash_point("after_post")
    _record_ts(services, r.id, key, ts)
    return ts


def _record_ts(services, rollout_id: int, key: str, ts: str) -> None:
    with services.store.session() as s:
        s.execute(update(RolloutMessage).where(RolloutMessage.rollout_id == rollout_id, RolloutMessage.key == key)
                  .values(ts=ts))


def _release_claim(services, rollout_id: int, key: str) -> None:
    """Slack answered and did not post: the claim goes, so the next pass posts without waiting."""
    with services.store.session() as s:
        s.query(RolloutMessage).filter(RolloutMessage.rollout_id == rollout_id, RolloutMessage.key == key,
                                       RolloutMessage.ts.is_(None)).delete()


def _find_posted(services, channel: str, thread_ts: str | None, rollout_id: int, key: str) -> str | None:
    """A message of ours with this key already in the thread (its poster died before recording it)."""
    if not thread_ts:
        return None
    try:
        cursor = None
        for _ in range(10):
            page = services.slack.conversations_replies(channel=channel, ts=thread_ts, include_all_metadata=True,
                                                        limit=200, cursor=cursor)
            for message in page.get("messages", []):
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if payload.get("rollout_id") == rollout_id and payload.get("key") == key:
                    return message["ts"]
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
    except (SlackApiError, SlackClientError) as exc:
        log.warning("rollout %s: could not read the thread to look for message %s: %s", rollout_id, key, exc)
    return None


def _message_ts(services, rollout_id: int, key: str) -> str | None:
    with services.store.session() as s:
        return s.scalar(select(RolloutMessage.ts).where(RolloutMessage.rollout_id == rollout_id,
                                                        RolloutMessage.key == key))


def _post_chart(services, r: Rollout, intent: dict) -> None:
    """The evidence chart, at most once per transition: a chart that fails is logged, never retried twice."""
    key = f"{intent['id']}:chart"
    with services.store.session() as s:
        claimed = _claim(s, rollout_id=r.id, key=key, channel=r.thread_channel or "", ts=None, claimed_at=utcnow())
    if not claimed or not r.thread_channel:
        return
    try:
        post_rendered = load_chart_module("bot.slack.charts").post_rendered
        rollout_chart = load_chart_module("charts.rollout").rollout
        evidence, events = chart_frames(services, r.id)
        chart = rollout_chart(evidence, events, r.model, r.stable_variant, r.candidate_variant)
        post_rendered(services.slack, r.thread_channel, r.thread_ts, chart)
    except Exception as exc:
        log.warning("rollout %s: the evidence chart was not posted: %s", r.id, exc)


def chart_frames(services, rollout_id: int):
    """The rollout's evidence history as the chart wants it: one row per variant per judgement, and events."""
    import pandas as pd

    with services.store.session() as s:
        r = store.get(s, rollout_id)
        rows = list(s.scalars(select(RolloutEvent).where(RolloutEvent.rollout_id == rollout_id)
                              .order_by(RolloutEvent.id)))
    evidence, events = [], []
    chart_kind = {"start": "start", "shift": "shift", "bake": "promote", "forced": "promote", "promoted": "promote",
                  "rollback": "rollback", "pause": "pause", "resume": "resume"}
    for e in rows:
        if e.kind == "judgement" and e.stable_requests is not None:
            for variant, n, errors, weight in (
                (r.stable_variant, e.stable_requests, e.stable_5xx, 100 - e.candidate_percent),
                (r.candidate_variant, e.candidate_requests, e.candidate_5xx, e.candidate_percent),
            ):
                lower, upper = wilson(errors or 0, n or 0)
                evidence.append({"at": e.at, "variant": variant, "requests": n, "errors": errors,
                                 "rate": (errors / n) if n else float("nan"), "lower": lower, "upper": upper,
                                 "weight": weight})
        elif e.kind in chart_kind:
            events.append({"at": e.at, "kind": chart_kind[e.kind], "label": (e.detail or {}).get("label", "")})
    return pd.DataFrame(evidence), pd.DataFrame(events)


def wilson(errors: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """A 95% band for one variant's error rate, for the chart only (the decision uses the judgement's test)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = errors / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _record_error(services, r: Rollout, error: str) -> None:
    # Not a transition: no version bump, so it never makes a concurrent transition fail; and only while the
    # row is as read, so a worker that lost a race does not leave an error on an intent another one finished.
    with services.store.session() as s:
        s.execute(update(Rollout).where(Rollout.id == r.id, Rollout.version == r.version)
                  .values(last_error=error[:2000]))


def _clear(services, r: Rollout) -> bool:
    """Marks the intent done; True when this was the intent still pending (else a newer one is owed)."""
    intent_id = r.pending["id"]
    roles: dict[str, str] = {}
    for post in r.pending.get("posts", []):
        role = post.get("role")
        if role in ("evidence", "pause"):
            ts = _message_ts(services, r.id, f"{intent_id}:{post['key']}")
            if ts:
                roles[f"{role}_ts"] = ts
    for _ in range(COMMAND_ATTEMPTS):
        latest = load(services, r.id)
        if latest is None or (latest.pending or {}).get("id") != intent_id:
            return False
        values = dict(pending=None, last_error=None, **roles)
        if "evidence_ts" in roles:
            values["last_evidence"] = None
        with services.store.session() as s:
            if store.save(s, latest, **values):
                return True
    return False


# ---------------------------------------------------------------------------------------------------------
# Doing a transition end to end (commands, the controller, the run watcher)


def transition(services, rollout_id: int, make_plan, *, carry: bool = True) -> tuple[Rollout | None, Plan | None]:
    """Reads, plans with make_plan(r) (None: nothing to do), commits; re-reads and re-plans when another
    process moved the rollout first. Then carries the intent out (failures stay owed to the controller)."""
    for _ in range(COMMAND_ATTEMPTS):
        r = load(services, rollout_id)
        if r is None:
            return None, None
        plan = make_plan(r)
        if plan is None:
            return r, None
        committed = commit(services, r, plan)
        if committed is None:
            continue
        if carry:
            problem = carry_out(services, rollout_id)
            if problem:
                log.warning("rollout %s: %s (owed; retried by the controller)", rollout_id, problem)
        return load(services, rollout_id), plan
    raise RolloutRefused("The rollout kept changing under this command (another worker is acting on it); "
                         "nothing was changed. Try again in a moment.")


def record_judgement(services, r: Rollout, settings: RolloutSettings, decision, stable, candidate,
                     now: datetime, *, edit: bool = True) -> bool:
    """A step that only waits: the evidence is stored, and its one message edited in place (not too often)."""
    last = r.last_evidence or {}
    counts = [stable.requests, stable.errors_5xx, stable.errors_4xx,
              candidate.requests, candidate.errors_5xx, candidate.errors_4xx]
    edited_at = last.get("edited_at")
    edit_due = edit and (counts != last.get("counts") or action_name(decision) != last.get("decision")) and (
        edited_at is None or (now - datetime.fromisoformat(edited_at)).total_seconds() >= EVIDENCE_EDIT_SECONDS)
    evidence = {"decision": action_name(decision).lower(), "counts": counts, "judged_at": now.isoformat(),
                "evidence": json_safe(decision.evidence),
                "edited_at": now.isoformat() if edit_due else edited_at}
    with services.store.session() as s:
        if not store.save(s, r, last_evidence=evidence):
            return False  # someone else moved it: their view wins
        s.add(RolloutEvent(rollout_id=r.id, **_event(r, "judgement", now, state=r.state, step_index=r.step_index,
                                                     decision=decision, stable=stable, candidate=candidate)))
    if edit_due and r.evidence_ts and r.thread_channel:
        minutes_on_timer = (now - r.when("timer_started_at")).total_seconds() / 60 if r.timer_started_at else 0.0
        body, blocks = text.step_message(r, settings, stable=stable, candidate=candidate, decision=decision,
                                         minutes_on_timer=minutes_on_timer, judged_at=now)
        try:
            services.slack.chat_update(channel=r.thread_channel, ts=r.evidence_ts, text=body, blocks=blocks)
        except (SlackApiError, SlackClientError) as exc:
            log.warning("rollout %s: evidence message not updated: %s", r.id, exc)
    return True


# ---------------------------------------------------------------------------------------------------------
# Starting


def _open_thread(services, r: Rollout, model: Model) -> None:
    """A rollout started from Slack gets its own thread in the model's channel, recorded for mentions."""
    if r.thread_ts:
        return
    body, blocks = text.parent_message(r, model, state_line=text.state_line(r))
    ts = _post_once(services, r, "parent", model.channel, None, (body, blocks))
    if ts is None:
        return
    with services.store.session() as s:
        s.execute(update(Rollout).where(Rollout.id == r.id).values(thread_channel=model.channel, thread_ts=ts))
        insert_ignore(s, Thread.__table__, {"kind": "rollout", "key": str(r.id), "model": r.model,
                                            "channel": model.channel, "ts": ts, "created_at": utcnow()},
                      ["kind", "key"])


def begin(services, rollout_id: int, now: datetime | None = None) -> Rollout | None:
    """pending -> the first step (its weights, its evidence message)."""
    now = now or utcnow()
    r = load(services, rollout_id)
    if r is None or r.state != "pending":
        return r
    model = services.registry.get(r.model)
    if not r.thread_ts and model is not None:
        try:
            _open_thread(services, r, model)
        except ExternalError as exc:
            log.warning("rollout %s: thread not opened yet: %s", rollout_id, exc)
            return load(services, rollout_id)
    settings = settings_for(services, r.model)
    r, _ = transition(services, rollout_id, lambda cur: plan_enter_step(cur, settings, 0, now, kind="start")
                      if cur.state == "pending" and cur.thread_ts else None)
    return r


def _new_rollout(services, model: Model, *, source: str, endpoint: str, stable: str, candidate: str,
                 run_key: str | None, started_by: str | None, channel: str | None, thread_ts: str | None,
                 previous_config: str | None, now: datetime) -> int | None:
    """Inserts the row; None when the model already has an unfinished rollout (or the run_key exists)."""
    values = dict(
        model=model.name, active_model=model.name, run_key=run_key, source=source, started_by=started_by,
        endpoint=endpoint, region=model.region, stable_variant=stable, candidate_variant=candidate,
        steps=[float(s) for s in model.rollout.steps], state="pending", step_index=0,
        previous_config=previous_config, thread_channel=channel, thread_ts=thread_ts,
        owns_parent=thread_ts is None, version=1, created_at=now, updated_at=now,
    )
    with services.store.session() as s:
        rollout_id = s.scalar(_insert(s, Rollout).values(**values).on_conflict_do_nothing()
                              .returning(Rollout.__table__.c.id))
        if rollout_id is None:
            return None
        if thread_ts:
            insert_ignore(s, Thread.__table__, {"kind": "rollout", "key": str(rollout_id), "model": model.name,
                                                "channel": channel, "ts": thread_ts, "created_at": now},
                          ["kind", "key"])
        return rollout_id


def _insert(session, model):
    builder = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return builder(model.__table__)


def _claim(session, **values) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: True when this call made the claim. (rowcount is not
    usable here: with the implicit RETURNING of the id, psycopg reports -1.)"""
    stmt = _insert(session, RolloutMessage).values(**values).on_conflict_do_nothing(
        index_elements=["rollout_id", "key"]).returning(RolloutMessage.__table__.c.id)
    return session.scalar(stmt) is not None


def start_from_deploy(services, model_name: str, *, endpoint: str, stable_variant: str, candidate_variant: str,
                      run_id: str, channel: str, thread_ts: str, now: datetime | None = None) -> int:
    """The deploy task finished: start the rollout in the run's thread. Idempotent per run_id.

    A rollout of the model still unfinished is aborted first: the deploy has replaced the candidate on the
    endpoint. SageMaker being unreachable does not lose the rollout: it stays pending and the controller
    begins it on its next pass.
    """
    now = now or utcnow()
    model = services.registry.get(model_name)
    if model is None:
        raise ValueError(f"model {model_name!r} is not in the models file")
    run_key = f"{model_name}/{run_id}"
    with services.store.session() as s:
        existing = store.by_run_key(s, run_key)
    if existing is not None:
        return existing.id
    previous_config = None
    try:
        previous_config = sagemaker.describe_endpoint(endpoint, model.region).config_name or None
    except ExternalError as exc:
        log.warning("rollout of %s: endpoint config not recorded: %s", model_name, exc)
    for _ in range(COMMAND_ATTEMPTS):
        rollout_id = _new_rollout(services, model, source="airflow", endpoint=endpoint, stable=stable_variant,
                                  candidate=candidate_variant, run_key=run_key, started_by=None, channel=channel,
                                  thread_ts=thread_ts, previous_config=previous_config, now=now)
        if rollout_id is not None:
            break
        with services.store.session() as s:
            existing = store.by_run_key(s, run_key)
            active = store.active_for(s, model_name)
        if existing is not None:
            return existing.id
        if active is not None:
            transition(services, active.id, lambda cur: plan_abort(
                cur, now, reason=f"replaced by the candidate `{candidate_variant}` of Airflow run `{run_id}`")
                if cur.active_model else None)
    else:
        raise RolloutRefused(f"could not start the rollout of {model_name} for run {run_id}")
    begin(services, rollout_id, now)
    return rollout_id


def detect_variants(state: sagemaker.EndpointState, wanted: str | None = None) -> tuple[str, str]:
    """(stable, candidate): stable carries all the traffic, candidate is the one variant at weight 0."""
    def found() -> str:
        split = ", ".join(f"`{v.name}` {100 * state.share(v.name):.0f}%" for v in state.variants) or "no variants"
        return f"Endpoint `{state.name}` has {split}."

    carrying = [v for v in state.variants if v.current_weight > 0]
    if wanted:
        if state.variant(wanted) is None:
            raise RolloutRefused(f"{found()} There is no variant `{text.escape(wanted)}` to promote.")
        others = [v for v in carrying if v.name != wanted]
        if len(others) != 1:
            raise RolloutRefused(f"{found()} Promoting `{text.escape(wanted)}` needs exactly one other variant "
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
        raise RolloutRefused(f"*{text.escape(model.name)}* has no endpoint in the models file; nothing to promote.")
    state = sagemaker.describe_endpoint(model.endpoint, model.region)
    if variant is None:
        with services.store.session() as s:
            last = store.latest_for(s, model.name)
        # The candidate the last deploy recorded, when the endpoint still looks the way it left it.
        if last is not None and last.state != "promoted" and last.endpoint == model.endpoint:
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
        raise RolloutRefused(f"*{text.escape(model.name)}* already has a rollout in progress; see `/model status "
                             f"{text.escape(model.name)}`.")
    return rollout_id


def start_from_slack(services, model: Model, *, user_id: str, variant: str | None = None,
                     now: datetime | None = None) -> Outcome:
    """/model promote: resumes a paused rollout, or starts one, with its own thread in the model's channel."""
    now = now or utcnow()
    with services.store.session() as s:
        active = store.active_for(s, model.name)
    if active is not None:
        if active.state == "paused":
            return resume(services, model, user_id=user_id, now=now)
        raise RolloutRefused(f"*{text.escape(model.name)}* is already being rolled out: "
                             f"{text.summary_line(active, model.rollout, now)}")
    rollout_id = _from_slack(services, model, user_id=user_id, variant=variant, now=now)
    r = begin(services, rollout_id, now)
    link = text.thread_link(r.thread_channel, r.thread_ts)
    if r.state == "pending":
        return Outcome(f":hourglass: Rollout of *{text.escape(model.name)}* recorded; Slack did not answer yet, so "
                       "it begins on the worker's next pass.", rollout_id=rollout_id)
    return Outcome(
        f":rocket: Rollout of *{text.escape(model.name)}* started: `{text.escape(r.candidate_variant)}` replacing "
        f"`{text.escape(r.stable_variant)}` on `{text.escape(r.endpoint)}`, first step "
        f"{text.percent(r.steps[0])}." + (f" Evidence in the <{link}|rollout thread>." if link else ""),
        rollout_id=rollout_id,
    )


# ---------------------------------------------------------------------------------------------------------
# Commands


def _active_or_refuse(services, model: Model, doing: str) -> Rollout:
    with services.store.session() as s:
        active = store.active_for(s, model.name)
    if active is None:
        raise RolloutRefused(f"*{text.escape(model.name)}* has no rollout in progress to {doing}.")
    return active


def pause(services, model: Model, *, user_id: str, reason: str | None = None, now: datetime | None = None) -> Outcome:
    now = now or utcnow()
    active = _active_or_refuse(services, model, "pause")
    why = reason or "paused by hand"
    r, plan = transition(services, active.id, lambda cur: plan_pause(
        cur, settings_for(services, cur.model), now, actor=user_id, reason=why)
        if cur.state in ("pending", "progressing", "baking") else None)
    if plan is None:
        return Outcome(f"The rollout of *{text.escape(model.name)}* is already {r.state if r else 'gone'}.",
                       rollout_id=active.id, changed=False)
    return Outcome(f":double_vertical_bar: Paused the rollout of *{text.escape(model.name)}* at "
                   f"{text.percent(r.percent)}. Traffic stays as it is; `/model resume {text.escape(model.name)}` "
                   "continues.", rollout_id=r.id)


def resume(services, model: Model, *, user_id: str, now: datetime | None = None) -> Outcome:
    now = now or utcnow()
    active = _active_or_refuse(services, model, "resume")
    r, plan = transition(services, active.id, lambda cur: plan_resume(
        cur, settings_for(services, cur.model), now, actor=user_id) if cur.state == "paused" else None)
    if plan is None:
        return Outcome(f"The rollout of *{text.escape(model.name)}* is not paused (it is {r.state if r else 'gone'}).",
                       rollout_id=active.id, changed=False)
    return Outcome(f":arrow_forward: Resumed the rollout of *{text.escape(model.name)}* at {text.percent(r.percent)}.",
                   rollout_id=r.id)


def rollback_target(services, model: Model) -> tuple[Rollout | None, str]:
    """What /model rollback would do, for the confirm question: (the rollout acted on, a description)."""
    with services.store.session() as s:
        active = store.active_for(s, model.name)
        last = store.latest_for(s, model.name)
    if active is not None:
        return active, (f"All traffic on `{text.escape(active.endpoint)}` goes back to "
                        f"`{text.escape(active.stable_variant)}` (`{text.escape(active.candidate_variant)}` to 0%), "
                        "the rollout ends and on-call is paged.")
    if last is not None and last.state == "promoted":
        if last.previous_config:
            return last, (f"`{text.escape(last.endpoint)}` goes back to `{text.escape(last.stable_variant)}` "
                          f"(its endpoint config before the rollout, `{text.escape(last.previous_config)}`, "
                          "if the variant is no longer on the endpoint), and on-call is paged.")
        return last, (f"All traffic on `{text.escape(last.endpoint)}` goes back to "
                      f"`{text.escape(last.stable_variant)}` if it is still on the endpoint; on-call is paged.")
    return None, ""


def rollback(services, model: Model, *, user_id: str, reason: str | None = None, rollout_id: int | None = None,
             now: datetime | None = None) -> Outcome:
    """/model rollback: the unfinished rollout goes back to its stable variant; with none, the last promoted one
    goes back to what the endpoint had before it. Pages either way."""
    now = now or utcnow()
    target, _ = rollback_target(services, model)
    if rollout_id is not None and (target is None or target.id != rollout_id):
        # A confirm button from an earlier prompt: it was about a rollout that has ended since.
        return Outcome("That rollout is over; nothing was changed. See `/model status "
                       f"{text.escape(model.name)}`.", changed=False)
    if target is None:
        state_note = ""
        if model.endpoint:
            try:
                state = sagemaker.describe_endpoint(model.endpoint, model.region)
                from bot.status.service import split_line

                state_note = f" The endpoint serves {split_line(state)}."
            except ExternalError:
                pass
        return Outcome(f"Nothing to roll back to: *{text.escape(model.name)}* has no rollout in progress and no "
                       f"earlier endpoint config is recorded.{state_note}", changed=False)
    why = reason or "no reason given"
    r, plan = transition(services, target.id, lambda cur: plan_rollback(
        cur, settings_for(services, cur.model), now, automatic=False, actor=user_id, reason=why)
        if cur.active_model or cur.state == "promoted" else None)
    if plan is None:
        return Outcome(f"The rollout of *{text.escape(model.name)}* was already {r.state if r else 'gone'}; "
                       "nothing was changed.", changed=False)
    owed = f"\n:warning: Still owed, retried every pass: {text.escape(r.last_error)}" if r.pending and r.last_error else ""
    if plan.intent.get("restore") is not None:
        done = f"`{text.escape(r.endpoint)}` is going back to `{text.escape(r.stable_variant)}`"
    else:
        done = f"All traffic on `{text.escape(r.endpoint)}` is back on `{text.escape(r.stable_variant)}`"
    return Outcome(f":rewind: Rolled back *{text.escape(model.name)}*: {done}. On-call has been paged.{owed}",
                   rollout_id=r.id)


def force_promote(services, model: Model, *, user_id: str, reason: str | None = None, variant: str | None = None,
                  now: datetime | None = None) -> Outcome:
    """/model promote --force: 100% to the candidate now, announced in the thread and the alert channel."""
    now = now or utcnow()
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
        if cur.state in ("pending", "progressing", "paused") else None)
    if plan is None:
        return Outcome(f"The rollout of *{text.escape(model.name)}* is already {r.state if r else 'gone'}; "
                       "nothing was changed.", rollout_id=rollout_id, changed=False)
    owed = f"\n:warning: Still owed, retried every pass: {text.escape(r.last_error)}" if r.pending and r.last_error else ""
    return Outcome(f":warning: Forced promotion of *{text.escape(model.name)}*: `{text.escape(r.candidate_variant)}` "
                   f"takes 100% of `{text.escape(r.endpoint)}` now. Announced in the thread and the alert channel."
                   f"{owed}", rollout_id=r.id)


# ---------------------------------------------------------------------------------------------------------
# Status


def rollout_summary(services, model: Model) -> str | None:
    """One mrkdwn line about the model's latest rollout, for /model status; None when it never had one."""
    with services.store.session() as s:
        r = store.active_for(s, model.name) or store.latest_for(s, model.name)
    if r is None:
        return None
    return text.summary_line(r, model.rollout, utcnow())
