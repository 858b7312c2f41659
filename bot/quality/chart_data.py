"""What the quality chart and the daily tables show, read from the store: the daily metric per variant, each
variant's reference, and the rollouts' promotions and rollbacks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import select

from bot.chart_loading import load as load_chart_module
from bot.quality.tables import QualityDay, QualityPass, QualityReference
from bot.registry import Model
from bot.rollouts.states import Event
from bot.rollouts.tables import Rollout, RolloutEvent
from bot.store.base import as_utc, utcnow

CHART_MIN_DAYS = 30
MARKED = {Event.BAKE.value: "promoted", Event.FORCED.value: "promoted", Event.ROLLBACK.value: "rolled back"}


@dataclass(frozen=True)
class DayRow:
    day: date
    variant: str
    value: float | None
    labelled: int
    predictions: int
    undefined: str | None = None
    not_binary: int = 0
    out_of_range: int = 0


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def day_rows(services, model: str, *, since: date, until: date, variant: str | None = None) -> list[DayRow]:
    query = select(QualityDay).where(QualityDay.model == model, QualityDay.day >= since, QualityDay.day <= until)
    if variant is not None:
        query = query.where(QualityDay.variant == variant)
    with services.store.session() as s:
        rows = list(s.scalars(query.order_by(QualityDay.day, QualityDay.variant)))
    return [DayRow(_as_date(r.day), r.variant, r.value, r.labelled, r.predictions, r.undefined, r.not_binary,
                   r.out_of_range) for r in rows if r.predictions or r.labelled]


def reference_detail(services, model: str, variant: str) -> str:
    with services.store.session() as s:
        ref = s.get(QualityReference, (model, variant))
        return ref.detail if ref is not None else "none yet"


def references(services, model: str) -> list[QualityReference]:
    with services.store.session() as s:
        rows = list(s.scalars(select(QualityReference).where(QualityReference.model == model)))
        for r in rows:
            s.expunge(r)
        return rows


def marks(services, model: str, since: date) -> list[dict]:
    """Promotions (a candidate took all traffic) and rollbacks of the model's rollouts since `since`."""
    start = datetime.combine(since, time.min, tzinfo=timezone.utc)
    with services.store.session() as s:
        rows = s.execute(select(RolloutEvent.at, RolloutEvent.kind, Rollout.candidate_variant, Rollout.stable_variant)
                         .join(Rollout, Rollout.id == RolloutEvent.rollout_id)
                         .where(Rollout.model == model, RolloutEvent.kind.in_(tuple(MARKED)),
                                RolloutEvent.at >= start)
                         .order_by(RolloutEvent.at)).all()
    return [{"at": as_utc(at), "kind": MARKED[kind], "variant": candidate} for at, kind, candidate, _ in rows]


def windows(services, model: str) -> list[dict]:
    """Each variant's metric over its last window, as the last pass judged it."""
    with services.store.session() as s:
        last = s.get(QualityPass, model)
        found = dict(last.windows or {}) if last is not None else {}
    return [{"variant": v, "value": w.get("value"), "labels": w.get("labels")} for v, w in found.items()]


def frames(services, model: Model, *, since: date, until: date):
    """(daily values, references, marks, windows) as the chart takes them."""
    import pandas as pd  # lazily: the web process stays free of pandas until it draws

    rows = day_rows(services, model.name, since=since, until=until)
    days = pd.DataFrame([{"day": r.day, "variant": r.variant, "value": r.value, "labels": r.labelled}
                         for r in rows], columns=["day", "variant", "value", "labels"])
    refs = pd.DataFrame([{"variant": r.variant, "value": r.value, "source": r.source}
                         for r in references(services, model.name)], columns=["variant", "value", "source"])
    events = pd.DataFrame(marks(services, model.name, since), columns=["at", "kind", "variant"])
    pooled = pd.DataFrame(windows(services, model.name), columns=["variant", "value", "labels"])
    return days, refs, events, pooled


def chart(services, name: str, model: Model | None, *, until: date | None = None, days: int | None = None):
    """The quality chart of the model over `days` (default: 30, or four windows when that is longer)."""
    draw = load_chart_module("charts.quality").quality
    until = until or utcnow().date()
    if model is None or model.quality is None:
        style = load_chart_module("charts.style")
        return style.no_data(f"{name}: quality", "The model is no longer measured (not in the models file).",
                             f"quality-{style.slug(name)}.png")
    span = days or max(CHART_MIN_DAYS, 4 * model.quality.window_days)
    since = until - timedelta(days=span - 1)
    daily, refs, events, pooled = frames(services, model, since=since, until=until)
    return draw(daily, refs, events, model=name, metric=model.metric or "metric", direction=model.direction,
                tolerance=model.quality.tolerance, window_days=model.quality.window_days, windows=pooled)
