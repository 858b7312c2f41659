"""The charts of `/model status <model>`: the endpoint's traffic split and error rates over the last 24 h, and
the rollout's evidence when one is in progress or ended recently.

An ephemeral reply cannot carry a file, so the charts go where the model's work is being discussed: the
rollout thread in progress, else the thread of a run in progress, else a direct message to whoever asked. A
mention inside one of modelbot's threads gets them in that thread. The reply says where, or why a chart is
not there; a chart never breaks the status reply.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from slack_sdk.errors import SlackApiError

from bot.integrations import cloudwatch
from bot.slack.charts import ChartPostError, post_rendered
from bot.registry import Model
from bot.integrations.sagemaker import EndpointState
from bot.slack.text import escape
from bot.store.base import as_utc, utcnow
from bot.rollouts import chart_data as rollouts
from bot.rollouts import tables as rollout_store
from bot.runs.tables import recent_runs
# At import, not per chart: see bot/run_charts.py (matplotlib imported by two threads at once breaks).
from charts.rollout import rollout as draw_rollout
from charts.status import status as status_chart

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)
PERIOD_SECONDS = 3600  # 24 points per variant: hourly error rates are not swamped by per-minute noise
RECENT_ROLLOUT = timedelta(hours=24)  # a rollout that ended within this long still gets its chart
FINISHED_RUN_STATES = ("success", "failed")


class ChartUnavailable(Exception):
    """Why a chart is not posted, in words for the reply."""


@dataclass(frozen=True)
class Destination:
    channel: str
    thread_ts: str | None
    where: str  # mrkdwn for the reply: a link to the thread, "this thread", "a direct message to you"


@dataclass
class Outcome:
    charts: list[tuple[str, object]] = field(default_factory=list)  # (what it shows, in words; RenderedChart)
    destination: Destination | None = None
    posted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "<chart> chart not available: <why>"

    def lines(self) -> list[str]:
        """For the reply: where the charts are (once posted), and every chart that is not there, and why."""
        lines = []
        if self.posted:
            lines.append(f":bar_chart: Charts posted in {self.destination.where}: {', '.join(self.posted)}.")
        lines.extend(f":warning: {escape(p)}" for p in self.problems)
        return lines


# ---------------------------------------------------------------- the traffic chart

def traffic_frame(cw: cloudwatch.CloudWatch, model: Model, state: EndpointState, now: datetime):
    """Hourly invocations and 4XX / 5XX per variant from CloudWatch, the current weights on the latest hour
    (SageMaker says only what they are now). An hour without a datapoint had no requests: zero."""
    import pandas as pd

    start = (now - WINDOW).replace(minute=0, second=0, microsecond=0)
    variants = [v.name for v in state.variants]
    if not variants:
        raise ChartUnavailable(f"endpoint {state.name} has no production variants")
    try:
        series = cw.fetch_series(state.name, variants, model.region, start=start, end=now, period=PERIOD_SECONDS)
    except cloudwatch.CloudWatchError as exc:
        raise ChartUnavailable(str(exc)) from None
    times = sorted({at for values in series.values() for at in values})
    if not times:
        raise ChartUnavailable(f"CloudWatch has no invocations of endpoint {state.name} in the last 24 h")
    weights = {v.name: v.current_weight for v in state.variants}
    rows = [
        {"at": at, "variant": v, "weight": weights[v] if at == times[-1] else math.nan,
         "invocations": series[(v, "Invocations")].get(at, 0.0),
         "errors_5xx": series[(v, "Invocation5XXErrors")].get(at, 0.0),
         "errors_4xx": series[(v, "Invocation4XXErrors")].get(at, 0.0)}
        for at in times for v in variants
    ]
    return pd.DataFrame(rows)


def traffic_chart(cw: cloudwatch.CloudWatch, model: Model, state: EndpointState, now: datetime):
    frame = traffic_frame(cw, model, state, now)
    stable = max(state.variants, key=lambda v: v.current_weight).name
    return status_chart(frame, model.name, state.name, stable=stable)


# ---------------------------------------------------------------- the rollout chart

def rollout_chart(services, model: Model, now: datetime):
    """The evidence chart of the rollout in progress or ended within RECENT_ROLLOUT; None when there is none."""
    with services.store.session() as s:
        r = rollout_store.active_for(s, model.name) or rollout_store.latest_for(s, model.name)
    if r is None:
        return None
    ended = as_utc(r.ended_at)
    if r.state not in rollout_store.ACTIVE_STATES and (ended is None or ended < now - RECENT_ROLLOUT):
        return None
    evidence, events = rollouts.chart_frames(services, r.id)
    if evidence.empty:
        raise ChartUnavailable(f"the rollout of {r.candidate_variant} has no judgement yet")
    return draw_rollout(evidence, events, r.model, r.stable_variant, r.candidate_variant)


# ---------------------------------------------------------------- where they go

def _thread_in_progress(services, model: Model) -> tuple[str, str, str] | None:
    with services.store.session() as s:
        r = rollout_store.active_for(s, model.name)
        if r is not None and r.thread_channel and r.thread_ts:
            return r.thread_channel, r.thread_ts, "the rollout thread"
        runs = recent_runs(s, model.name, limit=1)
    if runs and runs[0].channel and runs[0].thread_ts and runs[0].state not in FINISHED_RUN_STATES:
        return runs[0].channel, runs[0].thread_ts, "the run thread"
    return None


def destination(services, model: Model, user_id: str, here: tuple[str, str] | None = None) -> Destination:
    if here is not None:
        return Destination(here[0], here[1], "this thread")
    thread = _thread_in_progress(services, model)
    if thread is not None:
        channel, ts, label = thread
        try:
            link = services.slack.chat_getPermalink(channel=channel, message_ts=ts)["permalink"]
            return Destination(channel, ts, f"<{link}|{label}>")
        except Exception as exc:  # the thread is there; only the link is missing
            log.warning("no permalink for %s in %s: %s", ts, channel, exc)
            return Destination(channel, ts, f"{label} of {model.name}")
    try:
        dm = services.slack.conversations_open(users=user_id)["channel"]["id"]
    except SlackApiError as exc:
        error = exc.response.get("error", "unknown error") if exc.response is not None else exc
        raise ChartUnavailable(f"Slack did not open a direct message with you ({error}), so nothing was posted")
    except Exception as exc:
        raise ChartUnavailable(f"Slack could not be reached to open a direct message with you ({exc}), "
                               "so nothing was posted")
    return Destination(dm, None, "a direct message to you")


# ---------------------------------------------------------------- all of it

def _draw(what: str, draw, problems: list[str]):
    try:
        return draw()
    except ChartUnavailable as exc:
        problems.append(f"{what} chart not available: {exc}")
    except Exception as exc:
        log.exception("%s chart failed", what)
        problems.append(f"{what} chart not available: it could not be drawn ({type(exc).__name__}; logged)")
    return None


def prepare(services, model: Model, endpoint: EndpointState | None, endpoint_problem: str | None, *,
            user_id: str, here: tuple[str, str] | None = None, now: datetime | None = None) -> Outcome:
    """Draws the model's charts and picks where they go (opening a DM if need be); nothing is posted yet."""
    now = now or utcnow()
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    outcome = Outcome()
    if endpoint is None:
        outcome.problems.append(f"traffic chart not available: {endpoint_problem or 'no endpoint'}")
    else:
        chart = _draw("traffic", lambda: traffic_chart(services.cloudwatch, model, endpoint, now), outcome.problems)
        if chart is not None:
            outcome.charts.append(("traffic split and error rates, last 24 h", chart))
    chart = _draw("rollout", lambda: rollout_chart(services, model, now), outcome.problems)
    if chart is not None:
        outcome.charts.append(("rollout evidence", chart))
    if outcome.charts:
        try:
            outcome.destination = destination(services, model, user_id, here)
        except ChartUnavailable as exc:
            outcome.problems.append(f"chart not available: {exc}")
            outcome.charts = []
    return outcome


def post(services, outcome: Outcome) -> Outcome:
    """Uploads the prepared charts; a chart Slack does not take becomes a problem line."""
    where = outcome.destination
    for label, chart in outcome.charts:
        try:
            post_rendered(services.slack, where.channel, where.thread_ts, chart)
            outcome.posted.append(label)
        except ChartPostError as exc:
            outcome.problems.append(f"{label} chart not available: {exc}")
    outcome.charts = []
    return outcome


def post_status_charts(services, model: Model, endpoint: EndpointState | None, endpoint_problem: str | None, *,
                       user_id: str, here: tuple[str, str] | None = None, now: datetime | None = None) -> Outcome:
    """Draws the model's charts and posts them; returns what was posted where, and what was not and why."""
    return post(services, prepare(services, model, endpoint, endpoint_problem, user_id=user_id, here=here, now=now))
