"""What a variant's realized metric is compared with, in this order:

1. offline: the candidate's evaluation from its run, when modelbot saw the run (run_evaluations for the run whose
   deploy put this variant on the endpoint: run_candidates, or model_packages for a first model);
2. takeover: the realized metric over the first full window (window_days whole days) after the variant took all
   the traffic (the rollout's bake or forced promotion in rollout_events);
3. first: the realized metric over the first full window of labelled data, for a variant modelbot never saw
   take the traffic.

A realized reference needs min_labels labels in its window and is recomputed while labels for its window may
still arrive (LABEL_WAIT_DAYS after its end); then it is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from bot.pipelines.tables import ModelPackage
from bot.quality import join, metrics
from bot.quality.tables import QualityDay, QualityReference
from bot.registry import Model
from bot.rollouts.states import Event
from bot.rollouts.tables import Rollout, RolloutEvent
from bot.runs.tables import Candidate, Evaluation
from bot.store.base import as_utc, utcnow

TAKEOVER_EVENTS = (Event.BAKE.value, Event.FORCED.value)
EARLIEST = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Found:
    """A reference, or why there is none yet (`missing`)."""

    value: float | None
    source: str | None = None
    detail: str = ""
    labels: int | None = None
    window: tuple[date, date] | None = None
    fixed: bool = False
    missing: str | None = None


def offline(session, model: Model, variant: str) -> Found | None:
    """The evaluation of the run that deployed `variant`, when it measured the model's metric."""
    runs = [(c.dag_id, c.run_id, c.recorded_at) for c in session.scalars(
        select(Candidate).where(Candidate.model == model.name, Candidate.candidate_variant == variant))]
    runs += [(p.dag_id, p.run_id, p.recorded_at) for p in session.scalars(
        select(ModelPackage).where(ModelPackage.model == model.name, ModelPackage.variant == variant))]
    for dag_id, run_id, _ in sorted(runs, key=lambda r: as_utc(r[2]) or EARLIEST, reverse=True):
        ev = session.scalars(select(Evaluation).where(Evaluation.dag_id == dag_id, Evaluation.run_id == run_id)).first()
        if ev is not None and ev.metric == model.metric:
            return Found(ev.candidate, "offline", f"offline evaluation of run {run_id} of {dag_id}", fixed=True)
    return None


def takeover_day(session, model: Model, variant: str) -> datetime | None:
    """When `variant` first took all the traffic in a rollout modelbot ran."""
    at = session.scalar(
        select(func.min(RolloutEvent.at)).join(Rollout, Rollout.id == RolloutEvent.rollout_id)
        .where(Rollout.model == model.name, Rollout.candidate_variant == variant,
               RolloutEvent.kind.in_(TAKEOVER_EVENTS)))
    return as_utc(at)


def window_ids(conn: Connection, model: str, variant: str, start: date, end: date) -> list[int]:
    return list(conn.execute(select(QualityDay.id).where(
        QualityDay.model == model, QualityDay.variant == variant, QualityDay.day >= start,
        QualityDay.day <= end)).scalars())


def realized(conn: Connection, model: Model, variant: str, start: date, end: date) -> metrics.Score:
    labels, scores = join.pairs(conn, window_ids(conn, model.name, variant, start, end))
    return metrics.score(model.metric, labels, scores)


def find(services, conn: Connection, model: Model, variant: str, today: date, *, label_wait_days: int,
         known: QualityReference | None = None, changed_days: set[date] = frozenset()) -> Found:
    """The variant's reference now. A realized window's pairs are read only when `known` (the stored reference)
    is not that window's, or a day of it changed in this pass (`changed_days`)."""
    q = model.quality
    with services.store.session() as s:
        found = offline(s, model, variant)
        if found is not None:
            return found
        took_all = takeover_day(s, model, variant)
        if took_all is not None:
            start = took_all.date() + timedelta(days=1)
            source, how = "takeover", f"the first {q.window_days} full days after {variant} took all traffic"
        else:
            start = s.scalar(select(func.min(QualityDay.day)).where(
                QualityDay.model == model.name, QualityDay.variant == variant, QualityDay.labelled > 0))
            if start is None:
                return Found(None, missing=f"no labelled predictions of {variant} yet")
            start = start if isinstance(start, date) else date.fromisoformat(str(start))
            source, how = "first", f"the first {q.window_days} days of labelled data"
    end = start + timedelta(days=q.window_days - 1)
    if (known is not None and known.source == source and known.metric == model.metric
            and known.window_start == start and known.window_end == end
            and not any(start <= d <= end for d in changed_days)):
        return Found(known.value, source, known.detail, labels=known.labels, window=(start, end),
                     fixed=today > end + timedelta(days=label_wait_days))
    if end >= today:
        return Found(None, missing=f"the reference is {how}, {start:%Y-%m-%d} to {end:%Y-%m-%d}: complete after "
                                   f"{end:%Y-%m-%d}")
    result = realized(conn, model, variant, start, end)
    if result.value is None or result.labelled < q.min_labels:
        why = result.undefined if result.value is None and result.labelled else f"{result.labelled} labels"
        return Found(None, missing=f"the reference is {how}, {start:%Y-%m-%d} to {end:%Y-%m-%d}, which has "
                                   f"{why} (it needs {q.min_labels})")
    fixed = today > end + timedelta(days=label_wait_days)
    return Found(result.value, source, f"{how}, {start:%Y-%m-%d} to {end:%Y-%m-%d}", labels=result.labelled,
                 window=(start, end), fixed=fixed)


def stored(session, model: str, variant: str) -> QualityReference | None:
    return session.get(QualityReference, (model, variant))


def save(session, model: Model, variant: str, found: Found) -> None:
    row = session.get(QualityReference, (model.name, variant))
    values = dict(metric=model.metric, value=found.value, source=found.source, detail=found.detail,
                  labels=found.labels, window_start=found.window[0] if found.window else None,
                  window_end=found.window[1] if found.window else None, fixed=found.fixed, updated_at=utcnow())
    if row is None:
        session.add(QualityReference(model=model.name, variant=variant, **values))
    else:
        for k, v in values.items():
            setattr(row, k, v)
