"""Retraining runs: triggered from Slack, watched in Airflow, told in the model's channel, one thread per run.

The thread's parent message is kept up to date in place (one line per task); replies go into the thread when a
task fails, when `evaluate` and `deploy` report their evidence, and when the run ends. Every reply goes through
the run_events outbox (bot/store/runs.py), so it is posted exactly once whoever posts it: the /model retrain
handler, one worker, or two workers at once, across crashes and restarts. What each message says is built
in bot/runs/messages.py; this module decides what is posted and when.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import or_, select, update

from bot.integrations.airflow import AirflowAdapter, AirflowError, AirflowNotFound, AirflowUnreachable, RunInfo, TaskInfo
from bot.chart_loading import load as load_chart_module
from bot.errors import ExternalError
from bot.pipelines.packages import PackageRefused, record_deploy
from bot.registry import Model
from bot.rollouts import service as rollouts
from bot.slack import outbox
from bot.store.base import as_utc, utcnow
from bot.store.foundation import Thread, database_now, insert_ignore
from bot.runs import messages
from bot.runs.messages import SLACK_ID, render_parent
from bot.runs.tables import (
    Candidate,
    Evaluation,
    RunEvent,
    RunRecord,
    WatcherState,
    evaluation_for_run,
    find_run,
    recent_runs,
)

log = logging.getLogger(__name__)

# Rows committed in Airflow just before the cursor may carry an earlier updated_at: look back a little.
CURSOR_OVERLAP = timedelta(seconds=30)
FIRST_LOOKBACK = timedelta(hours=1)
MAX_BACKOFF_SECONDS = 600
# A run that never settles (its channel deleted, say) is no longer fetched on every pass after this long.
SETTLE_GIVE_UP = timedelta(days=2)
WATCHER = "run_watcher"
METADATA_TYPE = "modelbot_run_event"
class NotConfigured(ExternalError):
    pass


def require_airflow(services, not_done: str = "nothing was triggered") -> AirflowAdapter:
    if services.airflow is None:
        raise NotConfigured(messages.airflow_not_configured(not_done))
    return services.airflow


def _digest(text: str, blocks: list | None) -> str:
    return hashlib.sha256((text + json.dumps(blocks, sort_keys=True)).encode()).hexdigest()


# ---------------------------------------------------------------- the outbox

# The run's thread messages live in run_events, one row per (dag_id, run_id, event); bot/slack/outbox.py posts
# them exactly once.
RUN_EVENTS = outbox.OutboxTable(RunEvent, ("dag_id", "run_id", "event"), METADATA_TYPE)


def post_once(
    services,
    *,
    dag_id: str,
    run_id: str,
    event: str,
    channel: str,
    text: str,
    blocks: list | None = None,
    thread_ts: str | None = None,
) -> tuple[str | None, bool]:
    """Posts the message of one event exactly once. Returns (its ts, whether this call posted it).

    (None, False) means another process is posting it right now, or the post failed and is retried later.
    """
    return outbox.post_once(services, RUN_EVENTS, dict(dag_id=dag_id, run_id=run_id, event=event),
                            outbox.Message(channel=channel, text=text, blocks=blocks, thread_ts=thread_ts))


def claim_event(services, *, dag_id: str, run_id: str, event: str, channel: str, thread_ts: str | None,
                what: str) -> int | None:
    """Claims one event of a run for work that is not a chat message (a chart upload): the claim's id when this
    call made it, None when anyone claimed it before (done, in flight, or lost in a crash: at most once)."""
    ident = dict(dag_id=dag_id, run_id=run_id, event=event)
    if not outbox.claim(services, RUN_EVENTS, ident, channel=channel, thread_ts=thread_ts, what=what):
        return None
    with services.store.session() as s:
        return s.scalars(select(RunEvent.id).where(*RUN_EVENTS.where(ident))).one()


def finish_event(services, event_id: int, ts: str | None = None) -> None:
    """The claimed work is done (ts: the message it posted, when there is one)."""
    outbox.finish(services, RUN_EVENTS, {"id": event_id}, ts)


def release_event(services, event_id: int) -> None:
    """Slack certainly did not take the claimed work: free the claim so a later pass tries again."""
    outbox.release(services, RUN_EVENTS, {"id": event_id})


def claimed_events(services, dag_id: str, run_id: str, prefix: str) -> set[str]:
    """The run's events starting with `prefix` that anyone has claimed or done."""
    with services.store.session() as s:
        rows = s.execute(select(RunEvent.event, RunEvent.status).where(
            RunEvent.dag_id == dag_id, RunEvent.run_id == run_id, RunEvent.event.startswith(prefix, autoescape=True)))
        return {event for event, status in rows if outbox.is_taken(status)}


def _posted_events(store, dag_id: str, run_id: str) -> set[str]:
    with store.session() as s:
        rows = s.scalars(
            select(RunEvent.event).where(RunEvent.dag_id == dag_id, RunEvent.run_id == run_id,
                                         RunEvent.status == outbox.POSTED)
        )
        return set(rows)


# ---------------------------------------------------------------- runs and threads

def _requested_by(info: RunInfo) -> tuple[str | None, str]:
    asked = (info.conf or {}).get("requested_by")
    if isinstance(asked, str) and SLACK_ID.match(asked):
        return asked, "slack"
    return info.triggering_user, "airflow"


def record_run(store, info: RunInfo, model: Model, *, requested_by: str | None = None, via: str | None = None) -> RunRecord:
    """Inserts the run once, then refreshes what Airflow says about it."""
    now = utcnow()
    derived_by, derived_via = _requested_by(info)
    with store.session() as s:
        insert_ignore(
            s,
            RunRecord.__table__,
            dict(dag_id=info.dag_id, run_id=info.run_id, model=model.name, state=info.state, conf=info.conf or {},
                 requested_by=requested_by or derived_by, started_via=via or derived_via, run_type=info.run_type,
                 queued_at=info.queued_at or now, started_at=info.start_date, ended_at=info.end_date,
                 failed_tasks=[], settled=False, created_at=now, seen_at=now),
            ["dag_id", "run_id"],
        )
        row = find_run(s, info.dag_id, info.run_id)
        row.state = info.state
        row.started_at = info.start_date or row.started_at
        row.ended_at = info.end_date or row.ended_at
        row.run_type = info.run_type or row.run_type
        row.seen_at = now
        return row


def open_thread(services, airflow: AirflowAdapter, row: RunRecord, model: Model, tasks: list[TaskInfo],
                order: list[str]) -> str | None:
    """Posts the run's parent message once and records the thread; returns its ts (None: not open yet)."""
    text, blocks = render_parent(airflow, row, tasks, order)
    ts, posted_now = post_once(services, dag_id=row.dag_id, run_id=row.run_id, event="parent", channel=model.channel,
                               text=text, blocks=blocks)
    if ts is None:
        return None
    # When this call posted it, the parent already shows `tasks`; otherwise an update below catches up.
    digest = _digest(text, blocks) if posted_now else None
    with services.store.session() as s:
        insert_ignore(
            s,
            Thread.__table__,
            dict(kind="run", key=f"{row.dag_id}/{row.run_id}", model=model.name, channel=model.channel, ts=ts,
                 created_at=utcnow()),
            ["kind", "key"],
        )
        s.execute(
            update(RunRecord)
            .where(RunRecord.id == row.id, RunRecord.thread_ts.is_(None))
            .values(channel=model.channel, thread_ts=ts, parent_digest=digest)
        )
    row.channel, row.thread_ts, row.parent_digest = model.channel, ts, digest
    return ts


def refresh_parent(services, airflow: AirflowAdapter, row: RunRecord, tasks: list[TaskInfo], order: list[str]) -> None:
    """chat.update of the parent, only when what it shows has changed."""
    text, blocks = render_parent(airflow, row, tasks, order)
    digest = _digest(text, blocks)
    if digest == row.parent_digest:
        return
    try:
        services.slack.chat_update(channel=row.channel, ts=row.thread_ts, text=text, blocks=blocks)
    except SlackApiError as exc:
        log.warning("Slack did not update the parent of %s: %s", row.run_id, exc.response.get("error"))
        return
    with services.store.session() as s:
        s.execute(update(RunRecord).where(RunRecord.id == row.id).values(parent_digest=digest))
    row.parent_digest = digest


@dataclass
class Triggered:
    info: RunInfo
    run_url: str
    channel: str
    thread_ts: str | None
    permalink: str | None
    problem: str | None = None  # the run was triggered but its thread could not be opened (why)


def trigger_retrain(services, model: Model, user_id: str, extra_conf: dict[str, str]) -> Triggered:
    """Triggers the model's DAG now and opens the run's thread in the model's channel."""
    airflow = require_airflow(services)
    if not model.dag_id:
        raise NotConfigured(messages.no_dag_id(model.name))
    conf = {**extra_conf, "model": model.name, "requested_by": user_id}
    info = airflow.trigger(model.dag_id, conf)
    row = record_run(services.store, info, model, requested_by=user_id, via="slack")
    run_url = airflow.run_url(info.dag_id, info.run_id)
    try:
        ts = open_thread(services, airflow, row, model, [], [])
    except Exception as exc:  # the run is real: say so, and let the watcher open the thread
        log.exception("opening the thread of %s failed", info.run_id)
        return Triggered(info, run_url, model.channel, None, None, problem=f"{type(exc).__name__}: {exc}")
    if ts is None:
        return Triggered(info, run_url, model.channel, None, None,
                         problem="Slack did not take the thread's first message; the run watcher will post it")
    permalink = None
    try:
        permalink = services.slack.chat_getPermalink(channel=model.channel, message_ts=ts)["permalink"]
    except Exception as exc:  # the thread exists; a missing link is cosmetic
        log.warning("no permalink for %s: %s", ts, exc)
    return Triggered(info, run_url, model.channel, ts, permalink)


# ---------------------------------------------------------------- evidence

def parse_evaluation(value: Any) -> tuple[dict | None, str | None]:
    """The evaluate task's return value per the XCom contract, or why it does not follow it."""
    if not isinstance(value, dict):
        return None, "it returned nothing" if value is None else f"it returned {type(value).__name__}, not an object"
    problems = []
    metric = value.get("metric")
    if not isinstance(metric, str) or not metric:
        problems.append("`metric` (a name) is missing")
    numbers = {}
    for name in ("candidate", "production"):
        v = value.get(name)
        if name == "production" and v is None:
            numbers[name] = None  # a first model has nothing in production to compare with
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            problems.append(f"`{name}` is not a number")
        else:
            numbers[name] = float(v)
    promote = value.get("promote")
    if not isinstance(promote, bool):
        problems.append("`promote` is not true/false")
    uri = value.get("diagnostics_uri")
    if uri is not None and not isinstance(uri, str):
        problems.append("`diagnostics_uri` is not a string")
    if problems:
        return None, "; ".join(problems)
    # Optional (generated pipelines): the request schema compared with production's; shown, never required.
    schema = value.get("schema") if isinstance(value.get("schema"), dict) else None
    return {"metric": metric, **numbers, "promote": promote, "diagnostics_uri": uri or None, "schema": schema}, None


def parse_deploy(value: Any) -> tuple[dict | None, str | None]:
    if not isinstance(value, dict):
        return None, "it returned nothing" if value is None else f"it returned {type(value).__name__}, not an object"
    missing = [k for k in ("endpoint", "stable_variant", "candidate_variant") if not isinstance(value.get(k), str) or not value.get(k)]
    if missing:
        return None, ", ".join(f"`{k}`" for k in missing) + " missing"
    # Optional (generated pipelines): the Model Registry package, and whether the deploy created the endpoint
    # with the candidate alone (a first model: it serves everything, nothing to roll out).
    extra = {k: value[k] for k in ("model_package_arn",) if isinstance(value.get(k), str) and value[k]}
    extra |= {"created_endpoint": True} if value.get("created_endpoint") is True else {}
    if value["stable_variant"] == value["candidate_variant"] and not extra.get("created_endpoint"):
        return None, "`stable_variant` and `candidate_variant` are the same"
    return {k: value[k] for k in ("endpoint", "stable_variant", "candidate_variant")} | extra, None


def _after_evaluation(services, model: Model, evaluation_row: Evaluation, channel: str, thread_ts: str) -> None:
    """The evaluation and diagnostics charts, after the evaluation reply (each at most once per run).

    A failing chart must never stop the watcher: the numbers are already in the thread.
    """
    try:
        run_charts = load_chart_module("bot.runs.charts")

        run_charts.post_evaluation_charts(services, model, evaluation_row, channel, thread_ts)
    except Exception:
        log.exception("evaluation charts for %s failed", evaluation_row.run_id)


def _evaluation_charts_owed(services, row: RunRecord, model: Model) -> None:
    """A later pass: charts a crash (or a Slack refusal) left unposted after the evaluation reply."""
    try:
        run_charts = load_chart_module("bot.runs.charts")

        if not run_charts.evaluation_charts_owed(services, row.dag_id, row.run_id):
            return
        with services.store.session() as s:
            stored = evaluation_for_run(s, row.dag_id, row.run_id)
    except Exception:
        log.exception("evaluation charts for %s failed", row.run_id)
        return
    if stored is not None:  # None: the XCom broke the contract, there is nothing to draw
        _after_evaluation(services, model, stored, row.channel, row.thread_ts)


def _after_run_ended(services, airflow: AirflowAdapter, row: RunRecord, model: Model, tasks: list[TaskInfo]) -> None:
    """The run-history chart, once, after the run's end is told. A failing chart never stops the watcher."""
    try:
        run_charts = load_chart_module("bot.runs.charts")

        run_charts.post_run_history_chart(services, airflow, model, row, tasks)
    except Exception:
        log.exception("run history chart for %s failed", row.run_id)


def _return_value(airflow, row: RunRecord, task_id: str) -> Any:
    """The task's return value; a task that returned nothing has no XCom at all (Airflow answers 404)."""
    try:
        return airflow.xcom(row.dag_id, row.run_id, task_id)
    except AirflowNotFound:
        return None


FAILURE_XCOM = "modelbot_failure"  # a failed task's own reason (dags/modelbot_pipelines.py pushes it)


def _failure_reason(airflow, row: RunRecord, t: TaskInfo) -> str | None:
    """What a failed task said about itself (XCom FAILURE_XCOM, pushed by the generated pipelines), if anything."""
    try:
        reason = airflow.xcom(row.dag_id, row.run_id, t.task_id, key=FAILURE_XCOM)
    except AirflowError:  # none pushed (404), or Airflow busy: the log link is still there
        return None
    return reason if isinstance(reason, str) and reason.strip() else None


def _handle_evaluation(services, airflow, row: RunRecord, model: Model) -> bool:
    ev, problem = parse_evaluation(_return_value(airflow, row, "evaluate"))
    if ev is None:
        text = messages.evaluation_broken_text(problem)
        ts, _ = post_once(services, dag_id=row.dag_id, run_id=row.run_id, event="evaluation", channel=row.channel,
                          thread_ts=row.thread_ts, text=text)
        return ts is not None
    with services.store.session() as s:
        insert_ignore(
            s,
            Evaluation.__table__,
            dict(model=model.name, dag_id=row.dag_id, run_id=row.run_id, metric=ev["metric"], candidate=ev["candidate"],
                 production=ev["production"], direction=model.direction, promote=ev["promote"],
                 diagnostics_uri=ev["diagnostics_uri"], at=utcnow()),
            ["dag_id", "run_id"],
        )
        stored = s.scalars(select(Evaluation).where(Evaluation.dag_id == row.dag_id, Evaluation.run_id == row.run_id)).one()
    ts, posted_now = post_once(services, dag_id=row.dag_id, run_id=row.run_id, event="evaluation", channel=row.channel,
                               thread_ts=row.thread_ts, text=messages.evaluation_text(ev, model))
    if posted_now:
        _after_evaluation(services, model, stored, row.channel, row.thread_ts)
    return ts is not None


def _handle_deploy(services, airflow, row: RunRecord, model: Model, posted: set[str]) -> bool:
    if "deploy" not in posted:
        dep, problem = parse_deploy(_return_value(airflow, row, "deploy"))
        if dep is None:
            text = messages.deploy_broken_text(problem)
        elif dep.get("created_endpoint"):
            text = messages.deploy_created_endpoint_text(dep["endpoint"], dep["candidate_variant"])
        elif model.endpoint and dep["endpoint"] != model.endpoint:
            # Weights are only ever changed on the endpoint the models file names for the model.
            text = messages.deploy_wrong_endpoint_text(dep["endpoint"], dep["candidate_variant"], model.endpoint)
        else:
            with services.store.session() as s:
                insert_ignore(
                    s,
                    Candidate.__table__,
                    dict(model=model.name, endpoint=dep["endpoint"], stable_variant=dep["stable_variant"],
                         candidate_variant=dep["candidate_variant"], dag_id=row.dag_id, run_id=row.run_id,
                         recorded_at=utcnow(), consumed=False),
                    ["dag_id", "run_id"],
                )
            text = messages.candidate_recorded_text(dep["endpoint"], dep["stable_variant"], dep["candidate_variant"])
        if dep is not None and dep.get("model_package_arn"):  # recorded before the post: a pass may stop there
            try:
                record_deploy(services.store, model=model.name, dag_id=row.dag_id, run_id=row.run_id,
                              endpoint=dep["endpoint"], variant=dep["candidate_variant"], arn=dep["model_package_arn"],
                              created_endpoint=bool(dep.get("created_endpoint")), region=model.region)
                text += messages.model_package_line(dep["model_package_arn"])
            except PackageRefused as exc:
                text += messages.model_package_refused_line(str(exc))
        ts, _ = post_once(services, dag_id=row.dag_id, run_id=row.run_id, event="deploy", channel=row.channel,
                          thread_ts=row.thread_ts, text=text)
        if ts is None:
            return False
    with services.store.session() as s:
        cand = s.scalars(select(Candidate).where(Candidate.dag_id == row.dag_id, Candidate.run_id == row.run_id)).first()
    if cand is None or cand.rollout_started_at is not None or cand.rollout_error is not None:
        return True
    if not _claim_rollout_start(services, cand):
        return True  # another worker is handing it over right now
    return _start_rollout(services, row, model, cand)


ROLLOUT_CLAIM_TTL = timedelta(minutes=2)


def _claim_rollout_start(services, cand: Candidate) -> bool:
    with services.store.session() as s:
        now = database_now(s)  # the claim's age on the one clock every worker shares
        result = s.execute(
            update(Candidate)
            .where(Candidate.id == cand.id, Candidate.rollout_started_at.is_(None), Candidate.rollout_error.is_(None))
            .where(or_(Candidate.rollout_claimed_at.is_(None), Candidate.rollout_claimed_at < now - ROLLOUT_CLAIM_TTL))
            .values(rollout_claimed_at=now)
        )
        return result.rowcount == 1


def _start_rollout(services, row: RunRecord, model: Model, cand: Candidate) -> bool:
    """Hands the candidate to the rollout capability; it reports in this thread, idempotently per run."""
    error = None
    try:
        rollouts.start_from_deploy(services, model.name, endpoint=cand.endpoint, stable_variant=cand.stable_variant,
                                   candidate_variant=cand.candidate_variant, run_id=row.run_id, channel=row.channel,
                                   thread_ts=row.thread_ts)
    except Exception as exc:
        log.exception("starting the rollout of %s failed", row.run_id)
        error = str(exc) if isinstance(exc, ExternalError) else f"{type(exc).__name__}: {exc}"
    with services.store.session() as s:
        values = {"rollout_error": error[:2000]} if error else {"rollout_started_at": utcnow()}
        s.execute(update(Candidate).where(Candidate.id == cand.id).values(**values))
    if error is None:
        return True
    text = messages.rollout_not_started_text(cand.candidate_variant, error, model.name)
    ts, _ = post_once(services, dag_id=row.dag_id, run_id=row.run_id, event="rollout_start_failed",
                      channel=row.channel, thread_ts=row.thread_ts, text=text)
    return ts is not None


def process_run(services, airflow: AirflowAdapter, info: RunInfo, model: Model, order_cache: dict) -> bool:
    """One run, one pass: thread, parent, failures, evidence, end. True when nothing is left to post."""
    row = record_run(services.store, info, model)
    tasks = airflow.task_instances(info.dag_id, info.run_id)
    if info.dag_id not in order_cache:
        try:
            order_cache[info.dag_id] = airflow.task_order(info.dag_id)
        except AirflowUnreachable:
            raise
        except AirflowError:
            order_cache[info.dag_id] = []
    order = order_cache[info.dag_id]
    if not row.thread_ts:
        if open_thread(services, airflow, row, model, tasks, order) is None:
            return False
    refresh_parent(services, airflow, row, tasks, order)
    posted = _posted_events(services.store, row.dag_id, row.run_id)
    complete = True
    failed = []
    for t in tasks:
        if t.state in ("failed", "up_for_retry"):
            event = f"task_failed:{t.task_id}:{t.map_index}:{t.try_number}"
            failed.append(t.task_id)
            if event not in posted:
                ts, _ = post_once(services, dag_id=row.dag_id, run_id=row.run_id, event=event, channel=row.channel,
                                  thread_ts=row.thread_ts,
                                  text=messages.failure_text(airflow, row, t, _failure_reason(airflow, row, t)))
                complete &= ts is not None
    by_id = {t.task_id: t for t in tasks if t.map_index < 0}
    if getattr(by_id.get("evaluate"), "state", None) == "success":
        if "evaluation" not in posted:
            complete &= _handle_evaluation(services, airflow, row, model)
        else:
            _evaluation_charts_owed(services, row, model)
    if getattr(by_id.get("deploy"), "state", None) == "success":
        complete &= _handle_deploy(services, airflow, row, model, posted)
    if info.finished:
        ended = "ended" in posted
        if not ended:
            ts, _ = post_once(services, dag_id=row.dag_id, run_id=row.run_id, event="ended", channel=row.channel,
                              thread_ts=row.thread_ts, text=messages.ended_text(row, tasks))
            ended = ts is not None
            complete &= ended
        if ended:
            _after_run_ended(services, airflow, row, model, tasks)
    with services.store.session() as s:
        s.execute(update(RunRecord).where(RunRecord.id == row.id).values(
            failed_tasks=sorted(set(failed)), settled=bool(info.finished and complete)))
    return complete


# ---------------------------------------------------------------- the watcher

def _dag_models(registry) -> dict[str, list[Model]]:
    dags: dict[str, list[Model]] = {}
    for name in registry.names():
        m = registry.models[name]
        if m.dag_id:
            dags.setdefault(m.dag_id, []).append(m)
    return dags


def _model_for(models: list[Model], conf: dict) -> Model:
    """A DAG shared by several models: the conf's "model" says which run this is."""
    wanted = (conf or {}).get("model")
    return next((m for m in models if m.name == wanted), models[0])


def _state(session) -> WatcherState:
    insert_ignore(session, WatcherState.__table__, {"name": WATCHER, "failures": 0}, ["name"])
    return session.get(WatcherState, WATCHER)


def _unsettled(store, dag_ids: set[str]) -> list[RunRecord]:
    cutoff = utcnow() - SETTLE_GIVE_UP
    with store.session() as s:
        return list(s.scalars(select(RunRecord).where(
            RunRecord.settled.is_(False), RunRecord.dag_id.in_(dag_ids), RunRecord.created_at >= cutoff)))


def watch_pass(services) -> str:
    """One pass: list runs changed since the cursor (plus unsettled ones) and bring their threads up to date."""
    airflow = services.airflow
    if airflow is None:
        return "skipped: Airflow is not configured (set AIRFLOW_URL)"
    dags = _dag_models(services.registry)
    if not dags:
        return "skipped: no registered model has a dag_id"
    now = utcnow()
    with services.store.session() as s:
        st = _state(s)
        cursor, down_since, next_attempt = as_utc(st.cursor), as_utc(st.down_since), as_utc(st.next_attempt_at)
    if next_attempt and next_attempt > now:
        return (f"waiting: Airflow unreachable since {down_since:%H:%M:%S} UTC; "
                f"next try in {int((next_attempt - now).total_seconds())}s")
    since = cursor - CURSOR_OVERLAP if cursor else now - FIRST_LOOKBACK
    try:
        runs, server_time = airflow.changed_runs(sorted(dags), since)
        seen = {(r.dag_id, r.run_id) for r in runs}
        for row in _unsettled(services.store, set(dags)):
            if (row.dag_id, row.run_id) in seen:
                continue
            try:
                runs.append(airflow.get_run(row.dag_id, row.run_id))
            except AirflowNotFound:  # deleted in Airflow: nothing more will happen to it
                with services.store.session() as s:
                    s.execute(update(RunRecord).where(RunRecord.id == row.id).values(settled=True))
    except AirflowError as exc:
        return _outage(services, exc, now)
    notes = _recovered(services, down_since) if down_since else ""
    order_cache: dict[str, list[str]] = {}
    done = pending = failed = 0
    for info in runs:
        model = _model_for(dags[info.dag_id], info.conf)
        try:
            if process_run(services, airflow, info, model, order_cache):
                done += 1
            else:
                pending += 1
        except AirflowUnreachable as exc:
            return _outage(services, exc, now)
        except Exception:
            failed += 1
            log.exception("run watcher: %s %s failed", info.dag_id, info.run_id)
    with services.store.session() as s:
        st = _state(s)
        if st.cursor is None or as_utc(st.cursor) < server_time:
            st.cursor = server_time
        st.last_pass_at = now
    summary = f"{len(runs)} runs checked ({done} up to date, {pending} pending, {failed} failed)"
    return summary + notes


def _outage(services, exc: AirflowError, now: datetime) -> str:
    interval = float(services.settings.MODELBOT_JOB_INTERVAL_SECONDS)
    with services.store.session() as s:
        st = _state(s)
        if st.down_since is None:
            st.down_since, st.failures = now, 0
        st.failures += 1
        st.down_reason = str(exc)[:2000]
        backoff = min(interval * 2 ** (st.failures - 1), MAX_BACKOFF_SECONDS)
        # Slightly early, so a worker ticking every `interval` seconds does not skip one pass by a rounding error.
        st.next_attempt_at = now + timedelta(seconds=max(0.0, backoff - min(1.0, interval / 10)))
        down_since, failures = as_utc(st.down_since), st.failures
    key = f"airflow_down:{down_since:%Y%m%dT%H%M%S}"
    told = 0
    for row in _unsettled(services.store, {m.dag_id for m in services.registry.models.values() if m.dag_id}):
        if not row.thread_ts:
            continue
        text = messages.airflow_down_text(down_since, exc)
        ts, now_posted = post_once(services, dag_id=row.dag_id, run_id=row.run_id, event=key, channel=row.channel,
                                   thread_ts=row.thread_ts, text=text)
        told += int(now_posted)
    log.warning("run watcher: %s", exc)
    return f"Airflow unreachable (failure {failures}; {told} threads told): {exc}"


def _recovered(services, down_since: datetime) -> str:
    key = f"airflow_down:{down_since:%Y%m%dT%H%M%S}"
    with services.store.session() as s:
        told = s.execute(select(RunEvent.dag_id, RunEvent.run_id, RunEvent.channel, RunEvent.thread_ts)
                         .where(RunEvent.event == key, RunEvent.status == "posted")).all()
    for dag_id, run_id, channel, thread_ts in told:
        post_once(services, dag_id=dag_id, run_id=run_id, event=key.replace("down", "back"), channel=channel,
                  thread_ts=thread_ts, text=messages.airflow_back_text())
    with services.store.session() as s:
        st = _state(s)
        st.down_since = st.down_reason = st.next_attempt_at = None
        st.failures = 0
    return f"; Airflow is back after an outage since {down_since:%H:%M:%S} UTC"


# ---------------------------------------------------------------- status

def _run_line(services, row: RunRecord) -> str:
    run_url = services.airflow.run_url(row.dag_id, row.run_id) if services.airflow is not None else None
    return messages.run_line(row, run_url)


def last_run_summary(services, model: Model) -> str | None:
    """One mrkdwn line about the model's latest run, as the watcher or /model retrain last saw it."""
    with services.store.session() as s:
        rows = recent_runs(s, model.name, limit=1)
    return _run_line(services, rows[0]) if rows else None


def run_history_lines(services, model: Model, n: int = 5) -> list[str]:
    with services.store.session() as s:
        rows = recent_runs(s, model.name, limit=n)
    return messages.run_history_lines([_run_line(services, r) for r in rows])
