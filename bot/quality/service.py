"""The quality capability's service: measuring every model that has a `[models.X.quality]` table (for the worker),
what `/model quality` shows (from the store only), and the Retrain button's work."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from bot.quality import episodes, measure
from bot.quality import messages as text
from bot.quality.chart_data import DayRow, day_rows
from bot.quality.tables import QualityCursor, QualityDay, QualityEpisode, QualityPass, QualityProblem
from bot.registry import Model
from bot.runs import service as runs
from bot.store.base import as_utc, utcnow

log = logging.getLogger(__name__)

DEFAULT_DAYS = 30
MAX_DAYS = 365


def measured_models(services) -> list[Model]:
    return [m for m in services.registry.models.values() if m.quality is not None]


def due(services, model: Model, interval_seconds: float, now: datetime) -> bool:
    with services.store.session() as s:
        last = s.scalar(select(QualityPass.started_at).where(QualityPass.model == model.name))
    last = as_utc(last)
    return last is None or (now - last).total_seconds() >= interval_seconds


def measure_model(services, model: Model, *, now: datetime | None = None,
                  budget: float = measure.PASS_BUDGET_SECONDS) -> str:
    """One pass for one model, and what its judgement opens or closes. Never raises: a failure is logged once
    (with its traceback) and kept for /model quality."""
    try:
        outcome = measure.measure(services, model, now=now, budget=budget)
        acted = episodes.act(services, model, outcome.windows)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        if error == _last_error(services, model):  # the traceback was logged when it first happened
            log.warning("quality: measuring %s still fails: %s", model.name, error)
        else:
            log.exception("quality: measuring %s failed", model.name)
        try:
            measure.record_failure(services, model, error)
        except Exception as again:  # the database itself is what fails: the log has it
            log.warning("quality: the failure of %s could not be recorded: %s", model.name, again)
        return f"{model.name}: failed ({type(exc).__name__}; logged)"
    said = "".join(f"; {a.variant} {a.what}" for a in acted)
    return outcome.summary() + said


def _last_error(services, model: Model) -> str | None:
    try:
        with services.store.session() as s:
            return s.scalar(select(QualityPass.error).where(QualityPass.model == model.name))
    except Exception:  # the database is what fails: nothing to compare with
        return None


# ---------------------------------------------------------------------------------------------------------
# /model quality


@dataclass
class Report:
    model: str
    metric: str
    direction: str
    days: int
    window_days: int
    tolerance: float
    min_labels: int
    labels_uri: str
    rows: list[DayRow] = field(default_factory=list)
    windows: dict[str, dict] = field(default_factory=dict)
    open_since: dict[str, date] = field(default_factory=dict)
    problems: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    capture: str | None = None
    capture_source: str | None = None
    finished_at: datetime | None = None
    error: str | None = None
    backlog: bool = False
    never_measured: bool = True
    labels_read: int = 0
    labelled_total: int = 0


def report(services, model: Model, days: int = DEFAULT_DAYS, *, today: date | None = None) -> Report:
    """What `/model quality` shows, from the store: no S3 or SageMaker call."""
    q = model.quality
    today = today or utcnow().date()
    since = today - timedelta(days=days - 1)
    out = Report(model=model.name, metric=model.metric or "metric", direction=model.direction, days=days,
                 window_days=q.window_days, tolerance=q.tolerance, min_labels=q.min_labels, labels_uri=q.labels)
    out.rows = day_rows(services, model.name, since=since, until=today)
    with services.store.session() as s:
        last = s.get(QualityPass, model.name)
        if last is not None:
            out.never_measured = last.started_at is None
            out.windows = dict(last.windows or {})
            out.notes = list(last.notes or [])
            out.capture, out.capture_source = last.capture, last.capture_source
            out.finished_at, out.error, out.backlog = as_utc(last.finished_at), last.error, last.backlog
        out.open_since = episodes.open_variants(s, model.name)
        for kind, count, example in s.execute(
                select(QualityProblem.kind, func.sum(QualityProblem.count), func.max(QualityProblem.example))
                .where(QualityProblem.model == model.name, QualityProblem.day >= since)
                .group_by(QualityProblem.kind).order_by(QualityProblem.kind)):
            out.problems[kind] = (int(count or 0), example)
        out.labels_read = int(s.scalar(select(func.coalesce(func.sum(QualityCursor.lines), 0)).where(
            QualityCursor.model == model.name, QualityCursor.kind == "labels")) or 0)
        out.labelled_total = int(s.scalar(select(func.coalesce(func.sum(QualityDay.labelled), 0)).where(
            QualityDay.model == model.name)) or 0)
    return out



# ---------------------------------------------------------------------------------------------------------
# The Retrain button


@dataclass(frozen=True)
class RetrainOutcome:
    started: bool
    answer: str  # for the clicker
    run_id: str | None = None


def episode(services, episode_id: int) -> QualityEpisode | None:
    with services.store.session() as s:
        ep = s.get(QualityEpisode, episode_id)
        if ep is not None:
            s.expunge(ep)
        return ep


def retrain_from_decay(services, model: Model, episode_id: int, user_id: str) -> RetrainOutcome:
    """Starts `/model retrain` for the model of a decay message (rights are the caller's to check), once per
    decay: a second click is told who started which run. Raises bot.errors.ExternalError when Airflow fails."""
    ep = episode(services, episode_id)
    if ep is None or ep.model != model.name:
        return RetrainOutcome(False, text.episode_gone_answer())
    if ep.retrain_run_id and ep.retrain_error != "already running":
        return RetrainOutcome(False, text.already_retrained_answer(ep), ep.retrain_run_id)
    result = runs.trigger_retrain(services, model, user_id, {})
    info = result.info
    with services.store.session() as s:
        row = s.get(QualityEpisode, episode_id)
        row.retrain_requested_at, row.retrain_by = utcnow(), user_id
        row.retrain_dag_id, row.retrain_run_id, row.retrain_error = info.dag_id, info.run_id, None
        episodes.reply_in_thread(s, row, model.channel, f"retrain-{info.run_id}",
                                 text.retrain_reply(user_id, info.run_id, info.dag_id))
    where = f"<{result.permalink}|the run's thread>" if result.permalink else f"<#{result.channel}>"
    return RetrainOutcome(True, text.retrain_started_answer(info.run_id, info.dag_id, where), info.run_id)

