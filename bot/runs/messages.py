"""What a retraining run says in Slack: the thread's parent, its replies, and the run lines of /model status.

Pure builders: each takes data (a run row, Airflow's task instances, a parsed XCom value) and returns mrkdwn text
or Block Kit blocks. Nothing here talks to Slack, Airflow or the database; bot/runs/service.py decides what is
posted and when, and posts it through the outbox.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

from bot.integrations.airflow import AirflowAdapter, TaskInfo
from bot.registry import Model
from bot.runs.tables import RunRecord
from bot.slack.formatting import ago, duration
from bot.slack.text import code, escape, mention
from bot.store.base import as_utc, utcnow

SLACK_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")

STATE_ICONS = {
    "success": ":white_check_mark:",
    "failed": ":x:",
    "running": ":hourglass_flowing_sand:",
    "queued": ":clock3:",
    "scheduled": ":clock3:",
    "up_for_retry": ":repeat:",
    "up_for_reschedule": ":repeat:",
    "upstream_failed": ":no_entry_sign:",
    "skipped": ":fast_forward:",
    "removed": ":heavy_minus_sign:",
    "deferred": ":zzz:",
    "restarting": ":arrows_counterclockwise:",
    None: ":white_circle:",
}


# ---------------------------------------------------------------- small pieces

def run_duration(row: RunRecord) -> float | None:
    start = as_utc(row.started_at or row.queued_at)
    end = as_utc(row.ended_at)
    if start is None:
        return None
    return ((end or utcnow()) - start).total_seconds()


# Runs modelbot starts by itself put one of these names in the conf's requested_by (bot/quality: a decay with
# retrain_on_decay = true).
ON_DECAY = "retrain_on_decay"
MODELBOT_REQUESTERS = {ON_DECAY: "modelbot, on a quality decay (`retrain_on_decay = true`)"}


def who_started(row: RunRecord) -> str:
    if row.requested_by and SLACK_ID.match(row.requested_by):
        return mention(row.requested_by)
    if row.requested_by in MODELBOT_REQUESTERS:
        return MODELBOT_REQUESTERS[row.requested_by]
    if row.run_type == "scheduled":
        return "the Airflow scheduler"
    if row.requested_by:
        return f"{escape(row.requested_by)} in Airflow"
    return f"Airflow ({row.run_type or 'unknown'})"


def user_conf(conf: dict) -> dict:
    return {k: v for k, v in (conf or {}).items() if k not in ("model", "requested_by")}


def link(url: str, label: str) -> str:
    return f"<{url}|{escape(label)}>"


def _task_name(t: TaskInfo) -> str:
    return t.task_id + (f"[{t.map_index}]" if t.map_index >= 0 else "")


# ---------------------------------------------------------------- configuration

def airflow_not_configured(not_done: str) -> str:
    return f"Airflow is not configured (set AIRFLOW_URL); {not_done}."


def no_dag_id(model_name: str) -> str:
    return (
        f"*{escape(model_name)}* has no `dag_id` in the models file, so there is no Airflow DAG to trigger; "
        "nothing was triggered."
    )


# ---------------------------------------------------------------- the thread's parent

def render_parent(airflow: AirflowAdapter, row: RunRecord, tasks: list[TaskInfo], order: list[str]) -> tuple[str, list]:
    """The thread's parent: who asked, the run id, the conf, a link, then one line per task with its state."""
    icon = STATE_ICONS.get(row.state, ":grey_question:")
    state = row.state
    if row.state in ("success", "failed"):
        state += f" in {duration(run_duration(row))}"
    head = f"{icon} *{escape(row.model)}* retraining run {code(row.run_id)}: *{state}*"
    conf = user_conf(row.conf)
    conf_text = code(json.dumps(conf, sort_keys=True)) if conf else "none"
    who = who_started(row)
    about = (
        f"Started by {who} · DAG {code(row.dag_id)} · conf {conf_text} · "
        f"{link(airflow.run_url(row.dag_id, row.run_id), 'open in Airflow')}"
    )
    rank = {t: i for i, t in enumerate(order)}
    ordered = sorted(tasks, key=lambda t: (rank.get(t.task_id, len(rank)), t.task_id, t.map_index))
    lines = []
    for t in ordered:
        name = _task_name(t)
        extra = ""
        if t.state in ("success", "failed") and t.duration is not None:
            extra = f" ({duration(t.duration)})"
        if t.try_number > 1:
            extra += f", try {t.try_number}"
        lines.append(f"{STATE_ICONS.get(t.state, ':grey_question:')} {code(name)} {t.state or 'not started'}{extra}")
    task_text = "\n".join(lines) if lines else "_Waiting for Airflow to start the run…_"
    text = f"{head}\n{about}\n{task_text}"
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": head[:3000]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": about[:3000]}]},
        {"type": "section", "text": {"type": "mrkdwn", "text": task_text[:3000]}},
    ]
    return text, blocks


# ---------------------------------------------------------------- replies in the thread

REASON_LIMIT = 2500  # a failed task's own reason, quoted in its reply


def failure_text(airflow: AirflowAdapter, row: RunRecord, t: TaskInfo, reason: str | None = None) -> str:
    """A failed try; `reason` is what the task said about itself (the generated pipelines push it)."""
    name = _task_name(t)
    log_link = link(airflow.task_log_url(row.dag_id, row.run_id, t.task_id, t.try_number), f"log of try {t.try_number}")
    if t.state == "up_for_retry":
        text = (f":repeat: Task {code(name)} failed on try {t.try_number} of {t.max_tries + 1}; "
                f"Airflow will retry it. {log_link}")
    else:
        text = f":x: Task {code(name)} failed on try {t.try_number} and will not be retried. {log_link}"
    if reason:
        short = reason if len(reason) <= REASON_LIMIT else reason[:REASON_LIMIT - 1] + "…"
        text += "\n" + "\n".join(f"> {escape(line)}" for line in short.splitlines() or [short])
    return text


def ended_text(row: RunRecord, tasks: list[TaskInfo]) -> str:
    took = duration(run_duration(row))
    if row.state == "success":
        return f":white_check_mark: Run {code(row.run_id)} *succeeded* in {took}."
    failed = [t.task_id for t in tasks if t.state == "failed"]
    which = f": {', '.join(code(f) for f in failed)} failed" if failed else ""
    return f":x: Run {code(row.run_id)} *failed* after {took}{which}."


def evaluation_text(ev: dict, model: Model) -> str:
    direction = model.direction
    better_word = "higher" if direction == "maximize" else "lower"
    head = f":bar_chart: *Evaluation* on {code(ev['metric'])} ({better_word} is better)"
    lines = [head]
    cand, prod = ev["candidate"], ev["production"]
    if prod is None:
        lines.append(f"Candidate *{cand:.4g}*; nothing in production to compare with.")
        better = None
    else:
        diff = cand - prod
        better = diff > 0 if direction == "maximize" else diff < 0
        verdict_word = "better" if better else ("the same" if diff == 0 else "worse")
        lines.append(f"Candidate *{cand:.4g}* vs production *{prod:.4g}*: {diff:+.4g}, {verdict_word}.")
    schema = ev.get("schema") or {}
    if ev["promote"]:
        lines.append(":white_check_mark: Verdict: *promote*. The DAG recommends rolling the candidate out.")
    elif schema.get("blocked"):
        lines.append(":no_entry_sign: Verdict: *not deployed*: its request schema would refuse requests production "
                     "accepts (below).")
    else:
        lines.append(":no_entry_sign: Verdict: *keep production*. The DAG does not recommend the candidate.")
    if ev["promote"] and better is False:
        lines.append(f":warning: The DAG says promote although the candidate is not better on {code(ev['metric'])}.")
    if model.metric and model.metric != ev["metric"]:
        lines.append(f":warning: The models file names {code(model.metric)} as this model's metric.")
    lines.extend(schema_lines(schema, model.name))
    if ev["diagnostics_uri"]:
        lines.append(f"Diagnostics: {code(ev['diagnostics_uri'])}")
    return "\n".join(lines)


SHOWN_CHANGES = 12  # per kind in the thread; the rest are counted (evaluation.json has them all)


def _change_lines(changes: list, total: int) -> list[str]:
    shown = [c for c in changes if isinstance(c, dict)][:SHOWN_CHANGES]
    out = [f"• {code(str(c.get('field', '?')))}: {escape(str(c.get('change', '')))}" for c in shown]
    if total > len(shown):
        out.append(f"• … and {total - len(shown)} more (in the run's evaluation.json)")
    return out


def schema_lines(schema: dict, model_name: str) -> list[str]:
    """The evaluation's request-schema comparison with production's, field by field (generated pipelines)."""
    if not schema:
        return []
    breaking, compatible = schema.get("breaking") or [], schema.get("compatible") or []
    n_breaking = int(schema.get("breaking_count") or len(breaking))
    n_compatible = int(schema.get("compatible_count") or len(compatible))
    if not schema.get("compared"):
        return [f"Request schema: not compared with production's: {escape(str(schema['note']))}."] if schema.get(
            "note") else []
    if not n_breaking and not n_compatible:
        return ["Request schema: the same as production's."]
    lines = []
    if n_breaking:
        if schema.get("blocked"):
            lines.append(f":no_entry: *Request schema*: {n_breaking} change{'s' if n_breaking != 1 else ''} would "
                         "refuse requests production accepts, so the candidate is not deployed:")
        else:
            lines.append(f":warning: *Request schema*: {n_breaking} change{'s' if n_breaking != 1 else ''} refuse "
                         "requests production accepts; deployed anyway, as the run asked "
                         "(`allow_breaking_schema=true`). Callers must send what it needs:")
        lines.extend(_change_lines(breaking, n_breaking))
    if n_compatible:
        lines.append(f"Request schema, compatible change{'s' if n_compatible != 1 else ''}:" if n_breaking else
                     f"Request schema: compatible with production's ({n_compatible} "
                     f"change{'s' if n_compatible != 1 else ''}):")
        lines.extend(_change_lines(compatible, n_compatible))
    if schema.get("blocked"):
        lines.append(f"Once callers send what it needs, deploy it with `/model retrain {escape(model_name)} "
                     "allow_breaking_schema=true`.")
    return lines


def evaluation_broken_text(problem: str) -> str:
    """`evaluate` succeeded but its return value breaks the XCom contract."""
    return (f":warning: Task `evaluate` succeeded, but what it returned does not follow the XCom contract "
            f"({problem}), so there is no evaluation to report. See the README, 'What the DAG must return'.")


def deploy_broken_text(problem: str) -> str:
    """`deploy` succeeded but its return value breaks the XCom contract."""
    return (f":warning: Task `deploy` succeeded, but what it returned does not follow the XCom contract "
            f"({problem}), so no candidate was recorded and no rollout starts.")


def deploy_created_endpoint_text(endpoint: str, candidate_variant: str) -> str:
    """A first model: the deploy created the endpoint with the candidate alone."""
    return (f":package: Endpoint {code(endpoint)} was created with {code(candidate_variant)} "
            "alone: a first model has nothing to roll out against, so it serves all traffic now.")


def deploy_wrong_endpoint_text(endpoint: str, candidate_variant: str, model_endpoint: str) -> str:
    """The deploy used another endpoint than the one the models file names for the model."""
    return (f":warning: Task `deploy` put {code(candidate_variant)} on endpoint {code(endpoint)}, "
            f"but the models file names {code(model_endpoint)} as this model's endpoint, so no candidate was "
            "recorded and no rollout starts. Fix the DAG or the models file.")


def candidate_recorded_text(endpoint: str, stable_variant: str, candidate_variant: str) -> str:
    return (f":package: Candidate {code(candidate_variant)} is on endpoint {code(endpoint)} at "
            f"weight 0, beside {code(stable_variant)}. Starting the gradual rollout in this thread.")


def model_package_line(arn: str) -> str:
    """Appended to the deploy reply when the deploy registered a Model Registry package."""
    return f"\nModel Registry: package {code(arn)}."


def model_package_refused_line(problem: str) -> str:
    """Appended instead when the package is not the model's own: modelbot will never approve or reject it."""
    return (f"\n:warning: Model Registry: {problem}; modelbot did not record it and will not approve or reject it. "
            "Check the DAG that deployed it.")


def rollout_not_started_text(candidate_variant: str, error: str, model_name: str) -> str:
    return (f":warning: The rollout of {code(candidate_variant)} did not start: {error}\n"
            f"The candidate is recorded; start it with `/model promote {model_name}` once that is fixed.")


# ---------------------------------------------------------------- Airflow outages

def airflow_down_text(down_since: datetime, error: object) -> str:
    return (f":warning: Airflow cannot be reached since {down_since:%H:%M} UTC, so this run's progress is not "
            f"being updated: {error}\nI keep trying, less often while it lasts, and will say here when it answers.")


def airflow_back_text() -> str:
    return ":white_check_mark: Airflow answers again; catching up on this run."


# ---------------------------------------------------------------- status

def run_line(row: RunRecord, run_url: str | None) -> str:
    """One mrkdwn line about a run; `run_url` links the run id to Airflow when Airflow is configured."""
    icon = STATE_ICONS.get(row.state, ":grey_question:")
    label = code(row.run_id)
    if run_url is not None:
        label = link(run_url, row.run_id)
    took = duration(run_duration(row))
    took_text = f"{'took' if row.state in ('success', 'failed') else 'for'} {took}"
    return f"{icon} {label} {row.state}, {took_text}, started by {who_started(row)} {ago(row.queued_at)}".rstrip()


def run_history_lines(lines: list[str]) -> list[str]:
    """The run lines of the last runs under a heading, newest first (no runs: no lines)."""
    if not lines:
        return []
    return [f"*Last {len(lines)} run{'s' if len(lines) > 1 else ''}:*"] + [f"• {line}" for line in lines]
