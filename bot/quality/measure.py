"""One measuring pass of one model: read what is new in S3, recompute the days it changed, and judge each
variant's window against its reference (episodes.py acts on the judgement).

Where the captured predictions are: the endpoint's current config (DataCaptureConfig.DestinationS3Uri), else
the models file's `[models.X.pipeline] capture_uri` (or <artifacts>/capture), which the generated DAG's deploy
step writes into the config. Variants are the folders under <destination>/<endpoint>/.

A pass has a time budget: a first pass over weeks of capture stops at it and goes on next pass from the cursor
(the pass says "backlog"). Nothing here raises for S3, SageMaker or a bad line; what went wrong is in the pass's
notes and the problem counters, for /model quality to show.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import delete, select, update

from bot.integrations.s3 import S3ReadError, parse_location
from bot.integrations.sagemaker import EndpointNotFound, SageMakerError
from bot.quality import decay, join, metrics, references
from bot.quality.reading import CaptureSink, Days, LabelSink, Source, read_source
from bot.quality.tables import (QualityDay, QualityEpisode, QualityLabel, QualityPass, QualityPrediction,
                                QualityReference)
from bot.registry import Model
from bot.store.base import utcnow

log = logging.getLogger(__name__)

# Labels arriving later than this after their prediction's day find nothing to join: the pairs are pruned then.
LABEL_WAIT_DAYS = 30
PASS_BUDGET_SECONDS = 240.0


def retention_days(model: Model) -> int:
    return model.quality.window_days + LABEL_WAIT_DAYS


@dataclass
class Window:
    variant: str
    start: date
    end: date
    value: float | None
    labels: int
    judgement: decay.Judgement
    reference: references.Found
    undefined: str | None = None

    def as_json(self) -> dict:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "value": self.value,
                "labels": self.labels, "state": self.judgement.state, "worse_by": self.judgement.worse,
                "reference": self.reference.value, "reference_source": self.reference.source,
                "reference_detail": self.reference.detail, "reference_missing": self.reference.missing,
                "undefined": self.undefined}


@dataclass
class PassOutcome:
    model: str
    lines: int = 0
    files: int = 0
    notes: list[str] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    backlog: bool = False
    skipped: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase: capture, labels, days, windows

    def summary(self) -> str:
        if self.skipped:
            return f"{self.model}: {self.skipped}"
        states = ", ".join(f"{w.variant} {w.judgement.state}" for w in self.windows) or "no variant measured"
        more = " (backlog: continues next pass)" if self.backlog else ""
        return f"{self.model}: {self.files} files, {self.lines} lines read; {states}{more}"


# ---------------------------------------------------------------------------------------------------------
# Where things are


def capture_destination(services, model: Model) -> tuple[str | None, str | None, list[str]]:
    """(s3 URI, where it was found, notes): the endpoint config's capture destination, else the models file's."""
    notes: list[str] = []
    if model.endpoint:
        try:
            state = services.sagemaker.describe_endpoint(model.endpoint, model.region)
            config = services.sagemaker.describe_endpoint_config(state.config_name, model.region)
            capture = config.get("DataCaptureConfig") or {}
            if capture.get("EnableCapture", True) and capture.get("DestinationS3Uri"):
                modes = {str(o.get("CaptureMode")) for o in capture.get("CaptureOptions") or []}
                if modes and "Output" not in modes:
                    notes.append(f"endpoint config `{state.config_name}` captures only the requests (Input), not "
                                 "the predictions (Output): there is nothing to score")
                return capture["DestinationS3Uri"], "endpoint config", notes
            notes.append(f"endpoint config `{state.config_name}` of `{model.endpoint}` does not capture data")
        except EndpointNotFound:
            notes.append(f"SageMaker endpoint `{model.endpoint}` was not found in {model.region}")
        except SageMakerError as exc:
            notes.append(str(exc))
    if model.pipeline is not None:
        return model.pipeline.capture_destination, "models file", notes
    notes.append("no data capture configured: the endpoint config has no DataCaptureConfig and the models file "
                 f"has no [models.{model.name}.pipeline] section (whose deploy step turns capture on)")
    return None, None, notes


# ---------------------------------------------------------------------------------------------------------
# The pass


def measure(services, model: Model, *, now: datetime | None = None, budget: float = PASS_BUDGET_SECONDS) -> PassOutcome:
    now = now or utcnow()
    started, clock = now, time.monotonic()
    deadline = clock + budget
    out = PassOutcome(model.name)
    if not model.metric or model.metric not in metrics.FUNCTIONS:
        out.skipped = (f"no metric to measure: set `metric` for {model.name} in the models file to one of "
                       f"{', '.join(metrics.FUNCTIONS)}")
        _save_pass(services, model, started, clock, None, None, [out.skipped], {}, False)
        return out
    first = now - timedelta(days=retention_days(model))
    days = Days(services.store, model.name)
    capture, capture_source, notes = capture_destination(services, model)
    out.notes += notes
    lap = time.monotonic()

    def timed(phase: str) -> None:
        nonlocal lap
        out.seconds[phase] = time.monotonic() - lap
        lap = time.monotonic()

    if capture:
        _read_capture(services, model, capture, days, first, deadline, out)
    timed("capture")
    _read_labels(services, model, first, deadline, out)
    timed("labels")
    changed = recompute_days(services, model)
    timed("days")
    out.windows = judge_windows(services, model, now.date(), changed)
    prune(services, model, now.date())
    timed("windows")
    _save_pass(services, model, started, clock, capture, capture_source, out.notes,
               {w.variant: w.as_json() for w in out.windows}, out.backlog)
    return out


def _read_capture(services, model: Model, capture: str, days: Days, first: datetime, deadline: float,
                  out: PassOutcome) -> None:
    try:
        bucket, base = parse_location(capture)
        endpoint_prefix = f"{base}{model.endpoint}/"
        variants = services.s3.list_folders(bucket, endpoint_prefix, model.region)
    except S3ReadError as exc:
        out.notes.append(f"captured predictions not read: {exc}")
        return
    if not variants:
        out.notes.append(f"nothing captured yet under s3://{bucket}/{endpoint_prefix}")
    for variant in variants:
        source = Source(model.name, "capture", bucket, f"{endpoint_prefix}{variant}/", model.region, variant)
        sink = CaptureSink(model.name, variant, days, first.date())
        _count(out, read_source(services, source, sink, first=first, deadline=deadline),
               f"captured predictions of {variant}")


def _read_labels(services, model: Model, first: datetime, deadline: float, out: PassOutcome) -> None:
    try:
        bucket, prefix = parse_location(model.quality.labels)
    except S3ReadError as exc:
        out.notes.append(str(exc))
        return
    stats = read_source(services, Source(model.name, "labels", bucket, prefix, model.region), LabelSink(model.name),
                        first=first, deadline=deadline)
    _count(out, stats, "labels")


def _count(out: PassOutcome, stats, what: str) -> None:
    out.lines += stats.lines
    out.files += stats.files
    if stats.error:
        out.notes.append(f"{what}: {stats.error}; what was read is kept, the rest is read next pass")
    if stats.stopped:
        out.backlog = True


def recompute_days(services, model: Model) -> set[tuple[str, date]]:
    """The metric of every day a pass changed (dirty), from all of its pairs. Returns (variant, day) changed."""
    changed: set[tuple[str, date]] = set()
    with services.store.engine.connect() as conn:
        dirty = conn.execute(select(QualityDay.id, QualityDay.variant, QualityDay.day).where(
            QualityDay.model == model.name, QualityDay.dirty.is_(True))).all()
    for day_id, variant, day in dirty:
        with services.store.writing() as conn:
            labels, scores = join.pairs(conn, [day_id])
            result = metrics.score(model.metric, labels, scores)
            conn.execute(update(QualityDay).where(QualityDay.id == day_id).values(
                metric=model.metric, value=result.value, labelled=result.labelled, not_binary=result.not_binary,
                out_of_range=result.out_of_range, undefined=result.undefined, dirty=False, computed_at=utcnow()))
        changed.add((variant, day))
    return changed


def _variants(services, model: Model, since: date) -> list[str]:
    """Variants with labelled predictions in the window, or an open decay episode."""
    with services.store.session() as s:
        found = set(s.scalars(select(QualityDay.variant).where(
            QualityDay.model == model.name, QualityDay.day >= since, QualityDay.labelled > 0)))
        found |= set(s.scalars(select(QualityEpisode.variant).where(
            QualityEpisode.model == model.name, QualityEpisode.closed_at.is_(None))))
    return sorted(found)


def judge_windows(services, model: Model, today: date, changed: set[tuple[str, date]]) -> list[Window]:
    """Each variant's window (the last window_days, today included) against its reference."""
    q = model.quality
    start = today - timedelta(days=q.window_days - 1)
    windows = []
    with services.store.session() as s:
        last = s.get(QualityPass, model.name)
        stored_windows = dict(last.windows or {}) if last is not None else {}
        open_variants = set(s.scalars(select(QualityEpisode.variant).where(
            QualityEpisode.model == model.name, QualityEpisode.closed_at.is_(None))))
    for variant in _variants(services, model, start):
        changed_days = {d for v, d in changed if v == variant}
        with services.store.engine.connect() as conn:
            with services.store.session() as s:
                known = references.stored(s, model.name, variant)
                if known is not None:
                    s.expunge(known)
            ref = references.find(services, conn, model, variant, today, label_wait_days=LABEL_WAIT_DAYS,
                                  known=known, changed_days=changed_days)
            if ref.value is None and known is not None and known.metric == model.metric:
                # A reference once found stays, even after its window's pairs are pruned.
                ref = references.Found(known.value, known.source, known.detail, known.labels,
                                       (known.window_start, known.window_end), known.fixed)
            prior = stored_windows.get(variant) or {}
            if (prior.get("start") == start.isoformat() and prior.get("end") == today.isoformat()
                    and not any(start <= d <= today for d in changed_days)):
                value, labels, undefined = prior.get("value"), int(prior.get("labels") or 0), prior.get("undefined")
            else:
                result = references.realized(conn, model, variant, start, today)
                value, labels, undefined = result.value, result.labelled, result.undefined
        if ref.value is not None:
            with services.store.session() as s:
                references.save(s, model, variant, ref)
        judgement = decay.judge(direction=model.direction, tolerance=q.tolerance, min_labels=q.min_labels,
                                value=value, labels=labels, reference=ref.value, is_open=variant in open_variants)
        windows.append(Window(variant, start, today, value, labels, judgement, ref, undefined))
    return windows


def prune(services, model: Model, today: date) -> None:
    """Once a day: pairs older than the retention go (the daily values stay), labels can no longer join them."""
    cutoff = today - timedelta(days=retention_days(model))
    with services.store.session() as s:
        last = s.get(QualityPass, model.name)
        if last is not None and last.pruned_on == today:
            return
        old = list(s.scalars(select(QualityDay.id).where(QualityDay.model == model.name, QualityDay.day < cutoff)))
        for i in range(0, len(old), 500):
            s.execute(delete(QualityPrediction).where(QualityPrediction.day_id.in_(old[i:i + 500])))
        s.execute(delete(QualityLabel).where(QualityLabel.model == model.name, QualityLabel.arrived < cutoff))
        if last is None:
            s.add(QualityPass(model=model.name, backlog=False, pruned_on=today))
        else:
            last.pruned_on = today


def _save_pass(services, model: Model, started: datetime, clock: float, capture: str | None,
               capture_source: str | None, notes: list[str], windows: dict, backlog: bool) -> None:
    values = dict(started_at=started, finished_at=utcnow(), seconds=time.monotonic() - clock, capture=capture,
                  capture_source=capture_source, notes=notes or None, windows=windows or None, error=None,
                  backlog=backlog)
    with services.store.session() as s:
        row = s.get(QualityPass, model.name)
        if row is None:
            s.add(QualityPass(model=model.name, **values))
        else:
            for k, v in values.items():
                setattr(row, k, v)


def record_failure(services, model: Model, error: str) -> None:
    """A pass that failed outside S3 and SageMaker (the database, a bug): kept for /model quality."""
    with services.store.session() as s:
        row = s.get(QualityPass, model.name)
        if row is None:
            s.add(QualityPass(model=model.name, error=error, backlog=False, finished_at=utcnow()))
        else:
            row.error, row.finished_at = error, utcnow()


def references_of(services, model: str) -> dict[str, QualityReference]:
    with services.store.session() as s:
        rows = list(s.scalars(select(QualityReference).where(QualityReference.model == model)))
        for r in rows:
            s.expunge(r)
    return {r.variant: r for r in rows}
