"""Charts in a run's thread: the evaluation against past ones, the diagnostics from S3, and the run history.

Each chart is posted at most once per run, whoever gets there (two workers, a restart): its event key
("chart:evaluation", "chart:diagnostics", "chart:run_history") is claimed in the run watcher's outbox before
anything is drawn or uploaded. A claim is given back only when Slack certainly refused the upload, so a later
pass tries again while the run is still watched; a timeout keeps it, since the chart may be in the thread
already. Charts never hold a run's settling: a Slack app without files:write would otherwise keep every run
watched for days.
"""

from __future__ import annotations

import logging
from datetime import datetime

from slack_sdk.errors import SlackApiError

from bot.integrations.airflow import AirflowAdapter, AirflowError, TaskInfo
from bot.integrations.s3 import DiagnosticsReadError
from bot.slack.charts import ChartPostError, post_rendered
from bot.registry import Model
from bot.runs.service import claim_event, claimed_events, finish_event, post_once, release_event
from bot.slack.text import escape
from bot.store.base import as_utc, utcnow
from bot.runs.tables import Evaluation, RunRecord, evaluation_for_run, evaluations, recent_runs
# At import, not per chart: two workers' first charts in one process would otherwise import matplotlib in two
# threads at once, and its circular imports then hand one of them a half-initialised module. Importing this
# module is serialised by Python's import lock, so the charts are loaded once, whole.
from charts.diagnostics import diagnostics
from charts.evaluation import evaluation
from charts.run_history import run_history

log = logging.getLogger(__name__)

EVALUATION = "chart:evaluation"
DIAGNOSTICS = "chart:diagnostics"
RUN_HISTORY = "chart:run_history"
HISTORY_RUNS = 10  # runs drawn in the run-history chart (the chart's own limit)


def _certainly_refused(exc: ChartPostError) -> bool:
    """Slack answered no (ok=false or a 4xx): nothing was shared. A 5xx or a timeout may have shared it."""
    cause = exc.__cause__
    return isinstance(cause, SlackApiError) and getattr(cause.response, "status_code", 200) < 500


def _upload(services, event_id: int, channel: str, thread_ts: str | None, chart, what: str) -> bool:
    try:
        post_rendered(services.slack, channel, thread_ts, chart)
    except ChartPostError as exc:
        if _certainly_refused(exc):
            release_event(services, event_id)
        log.warning("%s: %s", what, exc)
        return False
    finish_event(services, event_id)
    return True


# ---------------------------------------------------------------- evaluation and diagnostics

def evaluation_charts_owed(services, dag_id: str, run_id: str) -> bool:
    """Whether a chart of the run's evaluation is neither posted nor being posted (a crash, a Slack refusal)."""
    done = claimed_events(services, dag_id, run_id, "chart:")
    if EVALUATION not in done:
        return True
    if DIAGNOSTICS in done:
        return False
    with services.store.session() as s:
        ev = evaluation_for_run(s, dag_id, run_id)
        return bool(ev and ev.diagnostics_uri)


def evaluation_history(services, evaluation_row: Evaluation):
    """The model's evaluations on the same metric up to this one, as the evaluation chart wants them."""
    import pandas as pd

    with services.store.session() as s:
        rows = evaluations(s, evaluation_row.model)
    this = (as_utc(evaluation_row.at), evaluation_row.id)
    picked = [e for e in rows if e.metric == evaluation_row.metric and (as_utc(e.at), e.id) <= this]
    if not any(e.id == evaluation_row.id for e in picked):
        picked.append(evaluation_row)  # older than the last 30: still the run being reported
    return pd.DataFrame(
        [{"run_id": e.run_id, "at": as_utc(e.at), "candidate": e.candidate,
          "production": float("nan") if e.production is None else e.production, "promoted": bool(e.promote)}
         for e in picked],
        columns=["run_id", "at", "candidate", "production", "promoted"],
    )


def post_evaluation_charts(services, model: Model, evaluation_row: Evaluation, channel: str, thread_ts: str) -> None:
    """The evaluation chart and, when the evaluate task gave a diagnostics_uri, the diagnostics chart."""
    try:
        _post_evaluation(services, model, evaluation_row, channel, thread_ts)
    except Exception:  # the diagnostics still get their chance
        log.exception("evaluation chart of %s failed", evaluation_row.run_id)
    if evaluation_row.diagnostics_uri:
        _post_diagnostics(services, model, evaluation_row, channel, thread_ts)


def _post_evaluation(services, model: Model, evaluation_row: Evaluation, channel: str, thread_ts: str) -> None:
    dag_id, run_id = evaluation_row.dag_id, evaluation_row.run_id
    event_id = claim_event(services, dag_id=dag_id, run_id=run_id, event=EVALUATION, channel=channel,
                           thread_ts=thread_ts, what=f"evaluation chart of {run_id}")
    if event_id is None:
        return
    chart = evaluation(evaluation_history(services, evaluation_row), model.name, evaluation_row.metric,
                       evaluation_row.direction)
    _upload(services, event_id, channel, thread_ts, chart, f"evaluation chart of {run_id}")


def _post_diagnostics(services, model: Model, evaluation_row: Evaluation, channel: str, thread_ts: str) -> None:
    dag_id, run_id, uri = evaluation_row.dag_id, evaluation_row.run_id, evaluation_row.diagnostics_uri
    event_id = claim_event(services, dag_id=dag_id, run_id=run_id, event=DIAGNOSTICS, channel=channel,
                           thread_ts=thread_ts, what=f"diagnostics chart of {uri}")
    if event_id is None:
        return
    try:
        frame = services.s3.read_diagnostics_csv(uri, model.region)
    except DiagnosticsReadError as exc:
        # Said once in the thread instead of the chart; the outbox makes that reply exactly-once by itself.
        text = f":warning: The diagnostics could not be read, so there are no diagnostic plots: {escape(str(exc))}"
        ts, _ = post_once(services, dag_id=dag_id, run_id=run_id, event="diagnostics_unreadable", channel=channel,
                          thread_ts=thread_ts, text=text)
        if ts is None:
            release_event(services, event_id)  # the reply is owed: a later pass gives it (or finds it posted)
        else:
            finish_event(services, event_id, ts)
        return
    chart = diagnostics(frame, model.name)
    _upload(services, event_id, channel, thread_ts, chart, f"diagnostics chart of {run_id} ({uri})")


# ---------------------------------------------------------------- run history

def _task_rows(run_id: str, tasks: list[TaskInfo]) -> list[dict]:
    return [{"run_id": run_id, "task_id": t.task_id, "start": t.start_date, "end": t.end_date,
             "state": t.state or "none"} for t in tasks]


def run_history_frame(airflow: AirflowAdapter, row: RunRecord, tasks: list[TaskInfo], others: list[RunRecord]):
    """Task start/end of this run (the list the watcher already has) and of the model's other recent runs, read
    from Airflow: modelbot keeps runs, not their tasks. A run Airflow cannot list (deleted, say) is left out."""
    import pandas as pd

    rows = _task_rows(row.run_id, tasks)
    for other in others:
        try:
            rows.extend(_task_rows(other.run_id, airflow.task_instances(other.dag_id, other.run_id)))
        except AirflowError as exc:
            log.info("run history of %s: %s left out (%s)", row.dag_id, other.run_id, exc)
    frame = pd.DataFrame(rows, columns=["run_id", "task_id", "start", "end", "state"])
    for column in ("start", "end"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def post_run_history_chart(services, airflow: AirflowAdapter, model: Model, row: RunRecord,
                           tasks: list[TaskInfo], *, now: datetime | None = None) -> None:
    """The last runs of the model's DAG, per task duration, failures marked, into the ended run's thread."""
    if RUN_HISTORY in claimed_events(services, row.dag_id, row.run_id, RUN_HISTORY):
        return
    if not any(t.start_date for t in tasks):
        return  # no task of this run ever started: a chart would show nothing about it
    event_id = claim_event(services, dag_id=row.dag_id, run_id=row.run_id, event=RUN_HISTORY, channel=row.channel,
                           thread_ts=row.thread_ts, what=f"run history chart after {row.run_id}")
    if event_id is None:
        return
    with services.store.session() as s:
        recent = [r for r in recent_runs(s, model.name, limit=HISTORY_RUNS + 5) if r.dag_id == row.dag_id]
    others = [r for r in recent if r.run_id != row.run_id][: HISTORY_RUNS - 1]
    frame = run_history_frame(airflow, row, tasks, others)

    import pandas as pd

    # Tasks of another run still going are drawn up to now.
    chart = run_history(frame, model.name, row.dag_id, now=pd.Timestamp(now or utcnow()))
    _upload(services, event_id, row.channel, row.thread_ts, chart, f"run history chart after {row.run_id}")
