"""What a rollout says in Slack: the evidence message of each step, transitions, buttons, the status line.

Pure functions from a rollout (and its latest evidence) to (text, blocks). `text` carries everything the blocks
say: it is the notification and what screen readers read.
"""

from __future__ import annotations

import json
from datetime import datetime

from bot.registry import Model, RolloutSettings
from bot.rollouts.prompts import bind_rollout
from bot.slack.formatting import big, clock, interval, is_number, minutes, number, percent, pp, rate
from bot.slack.text import escape, mention

CONTINUE_ACTION = "rollout_continue"
PAUSED_ROLLBACK_ACTION = "rollout_paused_rollback"
CONFIRM_ROLLBACK_ACTION = "rollout_rollback_confirm"
CONFIRM_FORCE_ACTION = "rollout_force_confirm"


# ---- pieces --------------------------------------------------------------------------------------------

def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:2990]}}


def _context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:1990]}]}


def step_title(r) -> str:
    steps = r.steps
    judged = [s for s in steps if s < 100]
    return f"Step {r.step_index + 1} of {len(judged)}: `{escape(r.candidate_variant)}` at {percent(r.percent)} of traffic"


def next_line(r, settings: RolloutSettings, minutes_on_timer: float) -> str:
    nxt = r.steps[r.step_index + 1] if r.step_index + 1 < len(r.steps) else 100
    where = "promote to 100%" + (f" and bake {minutes(settings.bake_minutes)}" if settings.bake_minutes else "") \
        if nxt >= 100 else f"shift to {percent(nxt)}"
    left = settings.max_step_minutes - minutes_on_timer
    return (
        f"*Next:* {where} once the candidate's error rates are shown to be at most {pp(settings.margin)[1:]} worse; "
        f"roll back if they are shown to be worse; still undecided in {minutes(left)}: pause and ask the owners."
    )


def counts_fields(r, stable, candidate) -> list[dict]:
    def field(role: str, variant: str, c) -> dict:
        if c is None:
            body = "no data yet"
        else:
            e5 = c.errors_5xx / c.requests if c.requests else None
            e4 = c.errors_4xx / c.requests if c.requests else None
            body = (f"{number(c.requests)} requests\n5XX {number(c.errors_5xx)} ({rate(e5)}) · "
                    f"4XX {number(c.errors_4xx)} ({rate(e4)})")
        return {"type": "mrkdwn", "text": f"*{role} `{escape(variant)}`*\n{body}"}

    return [field("Stable", r.stable_variant, stable), field("Candidate", r.candidate_variant, candidate)]


def latency_ms(microseconds) -> str:
    """ModelLatency (microseconds) as milliseconds."""
    return f"{microseconds / 1000:.3g} ms" if is_number(microseconds) else "–"


def evidence_line(evidence, settings: RolloutSettings) -> str:
    if evidence is None:
        return ""
    get = evidence.get if isinstance(evidence, dict) else (lambda k, d=None: getattr(evidence, k, d))
    def bound(kind: str) -> str:  # evidence from before issue 22 carries a two-sided interval instead
        upper = get(f"upper_{kind}")
        return f"upper bound {pp(upper)}" if is_number(upper) else f"interval {interval(get(f'interval_{kind}'))}"

    parts = [
        f"5XX {rate(get('stable_rate_5xx'))} → {rate(get('candidate_rate_5xx'))} "
        f"(difference {pp(get('diff_5xx'))}, {bound('5xx')})",
        f"4XX {rate(get('stable_rate_4xx'))} → {rate(get('candidate_rate_4xx'))} ({bound('4xx')})",
        f"margin {pp(settings.margin)[1:]}",
    ]
    if get("latency_minutes"):
        lat = get("latency_statistic")
        slower = (f", evidence it is slower {big(lat)} (rolls back at {get('latency_threshold'):.3g})"
                  if is_number(lat) and is_number(get("latency_threshold")) else "")
        parts.append(f"latency {latency_ms(get('latency_stable'))} → {latency_ms(get('latency_candidate'))} "
                     f"over {get('latency_minutes')} min (margin +{(settings.latency_margin or 0):.0%}{slower})")
    threshold = get("threshold")
    s5, s4 = get("statistic_5xx"), get("statistic_4xx")
    total = get("statistic")
    if is_number(threshold) and (is_number(total) or is_number(s5) or is_number(s4)):
        worst = total if is_number(total) else max(v for v in (s5, s4) if is_number(v))
        parts.append(f"evidence against the candidate {big(worst)} (rolls back at {threshold:.3g})")
    return " · ".join(parts)


def _action_name(decision) -> str:
    action = getattr(decision, "action", None)
    name = getattr(action, "name", None) or str(action)
    return name.lower()


def decision_line(decision, *, outcome: str | None = None) -> str:
    reason = getattr(getattr(decision, "evidence", None), "reason", None) or ""
    what = outcome or _action_name(decision)
    return f"*Decision:* {what}" + (f": {escape(reason)}" if reason else "")


# ---- messages ------------------------------------------------------------------------------------------

def step_message(r, settings: RolloutSettings, *, stable=None, candidate=None, decision=None,
                 minutes_on_timer: float = 0.0, outcome: str | None = None, final_line: str | None = None,
                 judged_at: datetime | None = None) -> tuple[str, list[dict]]:
    """The one message of a step, updated in place while the step waits."""
    title = f"*{step_title(r)}* (since {clock(r.when('step_started_at'))})"
    lines = [title]
    blocks = [_section(title), {"type": "section", "fields": counts_fields(r, stable, candidate)}]
    for f in counts_fields(r, stable, candidate):
        lines.append(f["text"].replace("\n", ": ", 1).replace("\n", " "))
    ev = evidence_line(getattr(decision, "evidence", None), settings)
    if ev:
        blocks.append(_context(ev))
        lines.append(ev)
    if decision is None:
        status = (f"*Waiting for traffic:* judging starts when each variant has {number(settings.min_requests)} "
                  "requests in this step.")
    else:
        status = decision_line(decision, outcome=outcome)
        if judged_at:
            status += f" _(judged {clock(judged_at)})_"
    lines.append(status)
    follow = final_line if final_line is not None else next_line(r, settings, minutes_on_timer)
    blocks.append(_section(status + ("\n" + follow if follow else "")))
    if follow:
        lines.append(follow)
    return "\n".join(lines), blocks


def step_superseded(r) -> tuple[str, list[dict]]:
    """The evidence message of a step that was paused and resumed: its evidence continues in a newer message."""
    title = f"*{step_title(r)}* (since {clock(r.when('step_started_at'))})"
    note = "_Paused here; this step's evidence continues in a newer message below._"
    return f"{title}\n{note}", [_section(title), _context(note)]


def parent_message(r, model: Model, *, state_line: str) -> tuple[str, list[dict]]:
    steps = " → ".join(percent(s) for s in r.steps)
    who = f" Started by {mention(r.started_by)}." if r.started_by else ""
    head = (f":rocket: *Rollout of {escape(model.name)}* on `{escape(r.endpoint)}`: "
            f"`{escape(r.candidate_variant)}` replacing `{escape(r.stable_variant)}`, steps {steps}.{who}")
    return head + "\n" + state_line, [_section(head), _context(state_line)]


def state_line(r) -> str:
    if r.state == "pending":
        return "Starting…"
    if r.state == "progressing":
        return step_title(r).replace("`", "")
    if r.state == "paused":
        return f":double_vertical_bar: Paused at {percent(r.percent)}: {escape(r.paused_reason or '')}"
    if r.state == "baking":
        return f":hourglass: Baking: `{escape(r.candidate_variant)}` at 100%, `{escape(r.stable_variant)}` kept at 0%"
    if r.state == "promoted":
        return f":white_check_mark: Promoted: `{escape(r.candidate_variant)}` serves all traffic"
    if r.state == "rolled_back":
        return f":rewind: Rolled back: all traffic on `{escape(r.stable_variant)}`"
    return f":x: Aborted: {escape(r.ended_reason or '')}"


def rollback_message(r, model: Model, *, automatic: bool, actor: str | None, reason: str,
                     restored_config: str | None = None, note: str | None = None) -> tuple[str, list[dict]]:
    who = "automatically" if automatic else f"by {mention(actor)}" if actor else "by hand"
    where = (f"Endpoint `{escape(r.endpoint)}` moved back to endpoint config `{escape(restored_config)}`."
             if restored_config else
             f"All traffic on `{escape(r.endpoint)}` is back on `{escape(r.stable_variant)}`; "
             f"`{escape(r.candidate_variant)}` is at 0%.")
    oncall = mention(model.oncall) if model.oncall else "the owners"
    if note:
        where = note
    text = (f":rotating_light: *{escape(model.name)} rolled back {who}.* {where}\n"
            f"*Why:* {escape(reason)}\nOn-call {oncall} has been paged.")
    return text, [_section(text)]


def pause_message(r, model: Model, *, actor: str | None, reason: str) -> tuple[str, list[dict]]:
    owners = " ".join(mention(o) for o in model.owners) or "Owners"
    who = f"Paused by {mention(actor)}" if actor else "Paused"
    if r.resume_state == "baking":
        # At 100% there is no other variant serving to compare with; the bake's time keeps counting.
        held = (f"`{escape(r.stable_variant)}` stays at 0% for an instant rollback and is not retired while "
                "paused; the bake's time keeps counting, so continuing once it has baked retires it at once.")
    else:
        held = "Traffic stays as it is; a candidate shown to be worse is still rolled back."
    text = (f":double_vertical_bar: *{who}* at {percent(r.percent)} (`{escape(r.candidate_variant)}`): "
            f"{escape(reason)}\n{held} {owners}: continue the rollout or roll it back?")
    blocks = [_section(text), pause_buttons(r)]
    return text, blocks


def pause_buttons(r) -> dict:
    value = json.dumps(bind_rollout(r))
    return {
        "type": "actions",
        "block_id": f"rollout_paused_{r.id}",
        "elements": [
            {"type": "button", "action_id": CONTINUE_ACTION, "style": "primary", "value": value,
             "text": {"type": "plain_text", "text": "Continue"}},
            {"type": "button", "action_id": PAUSED_ROLLBACK_ACTION, "style": "danger", "value": value,
             "text": {"type": "plain_text", "text": "Roll back"},
             "confirm": confirm_dialog("Roll back?", f"All traffic on {r.endpoint} goes back to {r.stable_variant}, "
                                       "the rollout ends and on-call is paged.", "Roll back")},
        ],
    }


def pause_closed_message(r, *, outcome: str) -> tuple[str, list[dict]]:
    text = f":double_vertical_bar: Paused at {percent(r.percent)}: {escape(r.paused_reason or '')}\n{outcome}"
    return text, [_section(text)]


def resumed_message(r, *, actor: str | None) -> tuple[str, list[dict]]:
    who = f" by {mention(actor)}" if actor else ""
    text = f":arrow_forward: Resumed{who}."
    return text, [_section(text)]


def baking_message(r, settings: RolloutSettings, *, forced_by: str | None = None, reason: str | None = None,
                   ) -> tuple[str, list[dict]]:
    if forced_by:
        head = (f":warning: *Forced promotion by {mention(forced_by)}*: `{escape(r.candidate_variant)}` now takes "
                f"100% of `{escape(r.endpoint)}`. The analysis was skipped.")
        if reason:
            head += f"\n*Reason:* {escape(reason)}"
    else:
        head = (f":white_check_mark: *Promoted to 100%*: `{escape(r.candidate_variant)}` now takes all traffic "
                f"of `{escape(r.endpoint)}`.")
    bake = (f"`{escape(r.stable_variant)}` stays on the endpoint at 0% for {minutes(settings.bake_minutes)} "
            f"so `/model rollback` is instant; then it is retired.")
    text = head + "\n" + bake
    return text, [_section(text)]


def promoted_message(r, *, retired_config: str | None, note: str | None = None) -> tuple[str, list[dict]]:
    text = f":tada: *Rollout complete*: `{escape(r.candidate_variant)}` serves all traffic of `{escape(r.endpoint)}`."
    if retired_config:
        text += (f" The endpoint now runs config `{escape(retired_config)}` without `{escape(r.stable_variant)}`;"
                 f" `/model rollback` goes back to `{escape(r.previous_config or '')}`.")
    if note:
        text += "\n" + note
    return text, [_section(text)]


def forced_alert(r, model: Model, *, actor: str, reason: str | None, thread_link: str | None) -> tuple[str, list[dict]]:
    text = (f":warning: *Forced promotion of {escape(model.name)}* by {mention(actor)}: "
            f"`{escape(r.candidate_variant)}` took 100% of `{escape(r.endpoint)}` without analysis.")
    if reason:
        text += f" Reason: {escape(reason)}"
    if thread_link:
        text += f" <{thread_link}|Rollout thread>"
    return text, [_section(text)]


def aborted_message(r, *, reason: str) -> tuple[str, list[dict]]:
    text = f":x: *Rollout aborted*: {escape(reason)}"
    return text, [_section(text)]


def waiting_message(active, deploy: dict) -> tuple[str, list[dict]]:
    """In a run's thread: its deploy came while another rollout of the model is in progress."""
    where = f" (<{link}|its thread>)" if (link := thread_link(active.thread_channel, active.thread_ts)) else ""
    text = (f":hourglass: The rollout of `{escape(deploy['candidate_variant'])}` waits: rollout {active.id} of "
            f"*{escape(active.model)}* (`{escape(active.candidate_variant)}`, {escape(state_line(active))}) is "
            f"still in progress on `{escape(active.endpoint)}`{where}. `{escape(deploy['candidate_variant'])}` stays "
            "on the endpoint at 0%; its gradual rollout starts here when that one ends, against whichever variant "
            "then serves all the traffic.")
    return text, [_section(text)]


def waiting_replaced_message(replaced: dict, deploy: dict) -> tuple[str, list[dict]]:
    text = (f":x: The waiting rollout of `{escape(replaced['candidate_variant'])}` will not start: a newer "
            f"deploy (`{escape(deploy['candidate_variant'])}`, run `{escape(deploy['run_id'])}`) replaced it.")
    return text, [_section(text)]


def waiting_not_started_message(deploy: dict, why: str) -> tuple[str, list[dict]]:
    text = (f":warning: The rollout of `{escape(deploy['candidate_variant'])}` did not start after the rollout "
            f"it waited for ended: {why} Start it by hand with `/model promote` once the endpoint is as it "
            "should be.")
    return text, [_section(text)]


def failure_notice(what: str, error: str) -> tuple[str, list[dict]]:
    text = f":warning: {what} did not happen yet: {error}\nmodelbot retries on every pass."
    return text, [_section(text)]


def confirm_dialog(title: str, text: str, confirm: str) -> dict:
    return {
        "title": {"type": "plain_text", "text": title[:100]},
        "text": {"type": "plain_text", "text": text[:300]},
        "confirm": {"type": "plain_text", "text": confirm[:30]},
        "deny": {"type": "plain_text", "text": "Cancel"},
        "style": "danger",
    }


def confirm_blocks(question: str, *, action_id: str, button: str, value: dict, dialog_title: str,
                   dialog_text: str) -> list[dict]:
    return [
        _section(question),
        {
            "type": "actions",
            "elements": [
                {"type": "button", "action_id": action_id, "style": "danger", "value": json.dumps(value)[:2000],
                 "text": {"type": "plain_text", "text": button},
                 "confirm": confirm_dialog(dialog_title, dialog_text, button)},
            ],
        },
    ]


def thread_link(channel: str | None, ts: str | None) -> str | None:
    if not channel or not ts:
        return None
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


def summary_line(r, settings: RolloutSettings | None, now: datetime) -> str:
    """One mrkdwn line for /model status."""
    link = thread_link(r.thread_channel, r.thread_ts)
    tail = f" (<{link}|thread>)" if link else ""
    started = r.when("step_started_at")
    since = minutes((now - started).total_seconds() / 60) if started else "–"
    if r.state == "pending":
        body = f"starting: `{escape(r.candidate_variant)}` replacing `{escape(r.stable_variant)}`"
    elif r.state == "progressing":
        body = f"{step_title(r)} for {since}"
        ev = r.last_evidence or {}
        if ev.get("decision"):
            body += f"; last decision {ev['decision']}"
    elif r.state == "paused":
        body = f"paused at {percent(r.percent)} (`{escape(r.candidate_variant)}`): {escape(r.paused_reason or '')}"
        if r.resume_state == "baking" and settings:
            done = started and (now - started).total_seconds() / 60 >= settings.bake_minutes
            body += (f"; baked {since} of {minutes(settings.bake_minutes)}" +
                     (", `/model resume` retires the old variant at once" if done else ""))
    elif r.state == "baking":
        total = minutes(settings.bake_minutes) if settings else "?"
        body = f"baking `{escape(r.candidate_variant)}` at 100% for {since} of {total}; `{escape(r.stable_variant)}` at 0%"
    elif r.state == "promoted":
        ended = r.when("ended_at")
        ago = f" {minutes((now - ended).total_seconds() / 60)} ago" if ended else ""
        body = f"`{escape(r.candidate_variant)}` promoted{ago}"
    elif r.state == "rolled_back":
        ended = r.when("ended_at")
        ago = f" {minutes((now - ended).total_seconds() / 60)} ago" if ended else ""
        who = f" by {mention(r.ended_by)}" if r.ended_by else " automatically"
        body = f"`{escape(r.candidate_variant)}` rolled back{who}{ago}: {escape(r.ended_reason or '')}"
    else:
        body = f"`{escape(r.candidate_variant)}` aborted: {escape(r.ended_reason or '')}"
    not_judged = (r.last_evidence or {}).get("not_judged") if r.state in ("progressing", "paused") else None
    if not_judged:
        at = datetime.fromisoformat(not_judged["at"])
        body += f"; not judged at {clock(at)}: {escape(not_judged.get('why') or '')}"
    if r.pending is not None and r.last_error:
        body += f" :warning: {escape(r.last_error)}"
    waiting = getattr(r, "next_deploy", None)
    if waiting and r.state in ("pending", "progressing", "paused", "baking"):
        body += (f"; next: `{escape(waiting['candidate_variant'])}` (run `{escape(waiting['run_id'])}`) waits for "
                 "this rollout to end")
    return body + tail
