"""The pure half of a transition: from the rollout as read, the new column values and the intent.

Nothing here reads the database or calls out. Every plan asks the state table (bot/rollouts/states.py) for its
move, so a move the table does not have raises IllegalTransition instead of being planned.

The intent is what the new state wants done outside, in two parts:
- its traffic part (SageMaker): the weights the new state wants, a config to restore, or a variant to retire;
- its notifications: message edits, posts, the chart, the parent refresh, a page, an alert.
It is stored in rollouts.pending (JSON) until carried out; `Intent.to_json` / `Intent.from_json` keep the
column's shape.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.registry import RolloutSettings
from bot.rollouts import messages as text
from bot.rollouts.states import Event, RolloutState, next_state
from bot.rollouts.tables import Rollout
from bot.slack import formatting
from bot.slack.text import mention


@dataclass
class Edit:
    """A chat.update of a message already in the thread."""

    channel: str
    ts: str
    text: str
    blocks: list[dict]


@dataclass
class Post:
    """A message to post. `render` names a message drawn when it is sent (it says what SageMaker did);
    otherwise `text`/`blocks` are final. `role` records its ts on the rollout (evidence_ts, pause_ts)."""

    key: str
    thread: bool = True
    text: str = ""
    blocks: list[dict] = field(default_factory=list)
    broadcast: bool = False
    role: str | None = None
    render: str | None = None
    actor: str | None = None
    reason: str | None = None
    channel: str | None = None


@dataclass
class PageOrder:
    reason: str
    automatic: bool
    actor: str | None = None


@dataclass
class Alert:
    actor: str
    reason: str | None = None


@dataclass
class Retire:
    variant: str
    config: str


@dataclass
class Intent:
    kind: str
    # Traffic (SageMaker): converge on rollouts.target_weights; restore an earlier config; retire a variant.
    weights: bool = False
    restore: bool = False
    restore_config: str | None = None
    retire: Retire | None = None
    # Notifications.
    updates: list[Edit] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)
    chart: bool = False
    parent: bool = False
    page: PageOrder | None = None
    alert: Alert | None = None
    resolve_earlier: bool = False
    # "<rollout id>.<version>": set when committed; message keys are made from it.
    id: str = ""

    def to_json(self) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        restore, config = value.pop("restore"), value.pop("restore_config")
        if restore:
            value["restore"] = {"config": config}
        return {k: v for k, v in value.items() if v is not None}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> "Intent":
        restore = value.get("restore")
        retire, page, alert = value.get("retire"), value.get("page"), value.get("alert")
        return cls(
            id=value.get("id", ""), kind=value.get("kind", ""), weights=bool(value.get("weights")),
            restore=restore is not None, restore_config=(restore or {}).get("config"),
            retire=Retire(**retire) if retire else None,
            updates=[Edit(**u) for u in value.get("updates", [])],
            posts=[Post(**p) for p in value.get("posts", [])],
            chart=bool(value.get("chart")), parent=bool(value.get("parent")),
            page=PageOrder(**page) if page else None, alert=Alert(**alert) if alert else None,
            resolve_earlier=bool(value.get("resolve_earlier")),
        )


@dataclass
class Plan:
    kind: str  # the event kind recorded in rollout_events: start, shift, bake, promoted, rollback, ...
    values: dict[str, Any]
    intent: Intent
    event: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------
# Small pure helpers


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


def event_row(r: Rollout, kind: str, now: datetime, *, state: str, step_index: int, decision=None, stable=None,
              candidate=None, actor: str | None = None, **detail: Any) -> dict[str, Any]:
    """The rollout_events row of a judgement or a transition."""
    percent = float(r.steps[min(step_index, len(r.steps) - 1)]) if state != RolloutState.ROLLED_BACK else 0.0
    evidence = getattr(decision, "evidence", None)
    if evidence is not None:
        detail["evidence"] = json_safe(evidence)
    if decision is not None:
        detail["failing"] = getattr(decision, "failing", None)
    return dict(
        at=now, kind=kind, state=str(state), step_index=step_index, candidate_percent=percent,
        decision=action_name(decision).lower() if decision is not None else None,
        actor=actor, detail=json_safe(detail), **_counts_columns(stable, candidate),
    )


def _thread_post(key: str, rendered: tuple[str, list[dict]], *, broadcast: bool = False,
                 role: str | None = None) -> Post:
    body, blocks = rendered
    return Post(key=key, text=body, blocks=blocks, broadcast=broadcast, role=role)


def _final_update(r: Rollout, settings: RolloutSettings, now: datetime, *, decision, stable, candidate,
                  outcome: str, final_line: str) -> list[Edit]:
    """The closing edit of the step's evidence message: the last counts and what was decided."""
    if not r.evidence_ts or not r.thread_channel:
        return []
    body, blocks = text.step_message(r, settings, stable=stable, candidate=candidate, decision=decision,
                                     outcome=outcome, final_line=final_line, judged_at=now)
    return [Edit(r.thread_channel, r.evidence_ts, body, blocks)]


def _close_pause(r: Rollout, outcome: str) -> list[Edit]:
    if r.state != RolloutState.PAUSED or not r.pause_ts or not r.thread_channel:
        return []
    body, blocks = text.pause_closed_message(r, outcome=outcome)
    return [Edit(r.thread_channel, r.pause_ts, body, blocks)]


def retire_config_name(r: Rollout) -> str:
    """A name for the endpoint config that serves only the candidate: unique per rollout, SageMaker's rules."""
    suffix = f"-r{r.id}"
    base = re.sub(r"[^A-Za-z0-9-]+", "-", f"{r.endpoint}-{r.candidate_variant}").strip("-")
    return (base[: 63 - len(suffix)].rstrip("-") or "modelbot") + suffix


# ---------------------------------------------------------------------------------------------------------
# Plans


def plan_enter_step(r: Rollout, settings: RolloutSettings, index: int, now: datetime, *, kind: str,
                    decision=None, stable=None, candidate=None) -> Plan:
    """Move to step `index` (the first one when starting); a step at 100% is the promotion: baking."""
    percent = float(r.steps[index])
    if percent >= 100:
        return plan_bake(r, settings, now, decision=decision, stable=stable, candidate=candidate)
    state = next_state(r.state, Event(kind))
    nxt = view(r, state=state, step_index=index, step_started_at=now, timer_started_at=now, evidence_ts=None)
    updates = _final_update(r, settings, now, decision=decision, stable=stable, candidate=candidate,
                            outcome=f"shift to {formatting.percent(percent)}",
                            final_line=f"*Next:* step {index + 1} at {formatting.percent(percent)}, below.")
    return Plan(
        kind=kind,
        values=dict(state=state, step_index=index, step_started_at=now, timer_started_at=now,
                    target_weights=weights_at(r, percent), resume_state=None, paused_reason=None,
                    evidence_ts=None, last_evidence=None),
        intent=Intent(kind=kind, weights=True, updates=updates, chart=kind == Event.SHIFT, parent=True,
                      posts=[_thread_post("step", text.step_message(nxt, settings), role="evidence")]),
        event=event_row(r, kind, now, state=state, step_index=index, decision=decision, stable=stable,
                        candidate=candidate, label=formatting.percent(percent)),
    )


def plan_bake(r: Rollout, settings: RolloutSettings, now: datetime, *, decision=None, stable=None, candidate=None,
              forced_by: str | None = None, reason: str | None = None) -> Plan:
    kind = Event.FORCED if forced_by else Event.BAKE
    state = next_state(r.state, kind)
    last = len(r.steps) - 1
    nxt = view(r, state=state, step_index=last, step_started_at=now)
    updates = _final_update(r, settings, now, decision=decision, stable=stable, candidate=candidate,
                            outcome="promote to 100%", final_line="*Next:* baking, below.")
    updates += _close_pause(r, f"Forced to 100% by {mention(forced_by)}." if forced_by else "Promoted.")
    posts = [_thread_post("baking", text.baking_message(nxt, settings, forced_by=forced_by, reason=reason),
                          broadcast=bool(forced_by), role="evidence")]
    intent = Intent(kind=kind, weights=True, updates=updates, posts=posts, chart=True, parent=True,
                    alert=Alert(actor=forced_by, reason=reason) if forced_by else None)
    return Plan(
        kind=kind,
        values=dict(state=state, step_index=last, step_started_at=now, timer_started_at=now,
                    target_weights={r.stable_variant: 0.0, r.candidate_variant: 1.0}, resume_state=None,
                    paused_reason=None, evidence_ts=None),
        intent=intent,
        event=event_row(r, kind, now, state=state, step_index=last, decision=decision, stable=stable,
                        candidate=candidate, actor=forced_by, reason=reason,
                        label="forced 100%" if forced_by else "100%"),
    )


def plan_finish_bake(r: Rollout, now: datetime) -> Plan:
    state = next_state(r.state, Event.PROMOTED)
    name = retire_config_name(r)
    return Plan(
        kind=Event.PROMOTED,
        values=dict(state=state, active_model=None, ended_at=now, target_weights=None, final_config=name),
        intent=Intent(kind=Event.PROMOTED, retire=Retire(variant=r.candidate_variant, config=name),
                      posts=[Post(key="promoted", render="promoted")], chart=True, parent=True,
                      resolve_earlier=True),
        event=event_row(r, Event.PROMOTED, now, state=state, step_index=r.step_index, label="baked"),
    )


def plan_rollback(r: Rollout, settings: RolloutSettings, now: datetime, *, automatic: bool, actor: str | None,
                  reason: str, decision=None, stable=None, candidate=None) -> Plan:
    state = next_state(r.state, Event.ROLLBACK)
    restore = r.state == RolloutState.PROMOTED
    updates = _final_update(r, settings, now, decision=decision, stable=stable, candidate=candidate,
                            outcome="roll back", final_line="*Next:* rolled back, below.") if decision else []
    updates += _close_pause(r, f"Rolled back by {mention(actor)}." if actor else
                            "Rolled back automatically: the candidate was shown to be worse.")
    intent = Intent(kind=Event.ROLLBACK, weights=not restore, restore=restore,
                    restore_config=r.previous_config if restore else None, updates=updates,
                    posts=[Post(key="rollback", render="rollback", broadcast=True)], chart=not restore, parent=True,
                    page=PageOrder(reason=reason, automatic=automatic, actor=actor))
    return Plan(
        kind=Event.ROLLBACK,
        values=dict(state=state, active_model=None, ended_at=now, ended_by=actor, ended_reason=reason,
                    target_weights=None if restore else {r.stable_variant: 1.0, r.candidate_variant: 0.0},
                    resume_state=None),
        intent=intent,
        event=event_row(r, Event.ROLLBACK, now, state=state, step_index=r.step_index, decision=decision,
                        stable=stable, candidate=candidate, actor=actor, reason=reason, automatic=automatic,
                        label="manual" if actor else "automatic"),
    )


def plan_pause(r: Rollout, settings: RolloutSettings, now: datetime, *, actor: str | None, reason: str,
               decision=None, stable=None, candidate=None) -> Plan:
    state = next_state(r.state, Event.PAUSE)
    updates = _final_update(r, settings, now, decision=decision, stable=stable, candidate=candidate,
                            outcome="pause", final_line="*Next:* paused, below.") if decision else []
    return Plan(
        kind=Event.PAUSE,
        values=dict(state=state, resume_state=r.state, paused_reason=reason),
        intent=Intent(kind=Event.PAUSE, weights=True, updates=updates, chart=decision is not None, parent=True,
                      posts=[Post(key="pause", render="pause", role="pause", actor=actor, reason=reason)]),
        event=event_row(r, Event.PAUSE, now, state=state, step_index=r.step_index, decision=decision,
                        stable=stable, candidate=candidate, actor=actor, reason=reason,
                        label="asks a human" if not actor else "by hand"),
    )


def plan_resume(r: Rollout, settings: RolloutSettings, now: datetime, *, actor: str | None) -> Plan:
    state = next_state(r.state, Event.RESUME, paused_from=r.resume_state)
    nxt = view(r, state=state, timer_started_at=now, paused_reason=None)
    updates = _close_pause(r, f"Continued by {mention(actor)}." if actor else "Continued.")
    posts = [_thread_post("resumed", text.resumed_message(nxt, actor=actor))]
    if state == RolloutState.PROGRESSING and r.evidence_ts and r.thread_channel:
        body, blocks = text.step_superseded(r)
        updates.append(Edit(r.thread_channel, r.evidence_ts, body, blocks))
    values = dict(state=state, resume_state=None, paused_reason=None, timer_started_at=now, pause_ts=None)
    if state == RolloutState.PROGRESSING:
        # A fresh evidence message below the pause: the old one is up the thread, out of sight.
        posts.append(_thread_post("step", text.step_message(nxt, settings), role="evidence"))
        values["evidence_ts"] = None
    return Plan(
        kind=Event.RESUME,
        values=values,
        intent=Intent(kind=Event.RESUME, weights=True, updates=updates, posts=posts, parent=True),
        event=event_row(r, Event.RESUME, now, state=state, step_index=r.step_index, actor=actor, label=""),
    )


def plan_abort(r: Rollout, now: datetime, *, reason: str, actor: str | None = None) -> Plan:
    """The rollout ends without a verdict. Its candidate goes to weight 0 first: an aborted candidate must not
    keep its share into whatever starts next. A rollout that never began moved no traffic: it changes none."""
    state = next_state(r.state, Event.ABORT)
    nxt = view(r, state=state, ended_reason=reason)
    began = r.state != RolloutState.PENDING
    return Plan(
        kind="aborted",
        values=dict(state=state, active_model=None, ended_at=now, ended_by=actor, ended_reason=reason,
                    target_weights={r.stable_variant: 1.0, r.candidate_variant: 0.0} if began else None,
                    resume_state=None),
        intent=Intent(kind="aborted", weights=began, updates=_close_pause(r, "Aborted."), parent=True,
                      posts=[_thread_post("aborted", text.aborted_message(nxt, reason=reason))]),
        event=event_row(r, "aborted", now, state=state, step_index=r.step_index, actor=actor, reason=reason),
    )


def plan_judgement(r: Rollout, settings: RolloutSettings, decision, stable, candidate, now: datetime) -> Plan | None:
    """What a judgement means for a progressing (or paused) rollout; None: it only waits."""
    action = action_name(decision)
    if action == "ROLLBACK":
        return plan_rollback(r, settings, now, automatic=True, actor=None,
                             reason=rollback_reason(r, decision, settings.alpha),
                             decision=decision, stable=stable, candidate=candidate)
    if r.state == RolloutState.PAUSED:
        return None  # held by a human: only a candidate shown to be worse moves it
    if action == "SHIFT":
        return plan_enter_step(r, settings, r.step_index + 1, now, kind=Event.SHIFT, decision=decision,
                               stable=stable, candidate=candidate)
    if action == "PAUSE":
        # Short, for the status line; the judgement's full reason goes into the step's final evidence.
        reason = (f"still undecided after {formatting.minutes(settings.max_step_minutes)} "
                  f"at {formatting.percent(r.percent)}")
        return plan_pause(r, settings, now, actor=None, reason=reason, decision=decision, stable=stable,
                          candidate=candidate)
    return None


def rollback_reason(r: Rollout, decision, alpha: float) -> str:
    """One sentence for the page, the status line and the rollback message (the step's evidence message
    keeps the judgement's full reasoning)."""
    ev = decision.evidence
    failing = (getattr(decision, "failing", None) or "5xx").lower()
    if failing == "latency":
        return (f"candidate `{r.candidate_variant}` mean latency {text.latency_ms(ev.latency_candidate)} vs stable "
                f"{text.latency_ms(ev.latency_stable)} at {formatting.percent(r.percent)} of traffic: shown slower "
                f"than the latency margin allows at α {alpha:g} (evidence {formatting.big(ev.latency_statistic)} "
                f"≥ {ev.latency_threshold:.3g})")
    cand = getattr(ev, f"candidate_rate_{failing}", None)
    stab = getattr(ev, f"stable_rate_{failing}", None)
    # The rollout's whole evidence when the judgement gives it (issue 22), else the failing type's.
    stat = getattr(ev, "statistic", None) or getattr(ev, f"statistic_{failing}", None)
    why = (f"candidate `{r.candidate_variant}` {failing.upper()} rate {formatting.rate(cand)} "
           f"vs stable {formatting.rate(stab)} at {formatting.percent(r.percent)} of traffic: "
           f"shown worse at α {alpha:g}")
    threshold = getattr(ev, "threshold", None)
    if isinstance(stat, (int, float)) and isinstance(threshold, (int, float)):
        why += f" (evidence {formatting.big(stat)} ≥ {threshold:g})"
    return why
