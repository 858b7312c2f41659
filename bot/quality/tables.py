"""The quality capability's tables: what was read from S3, the join of predictions and labels, the daily metric,
the reference, and decay episodes.

The join lives in two insert-only tables keyed by a 64-bit hash of (model, id[, instance]) (formats.join_key):
quality_predictions and quality_labels. Either side may come first (labels usually arrive days later; a label
may be read before the capture file that holds its prediction), and each is written once, so a day of a million
records costs two bulk inserts, not a million updates. The pairs are read by joining the two on the key.

quality_days is one row per (model, variant, day of the prediction): the bucket every prediction belongs to, the
metric over its labelled predictions, and the counts. It outlives the pairs, which are pruned after the labels
can no longer arrive (service.RETENTION), so the chart keeps months of history.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Boolean, Date, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.base import Base, as_utc, utcnow

NULLABLE_JSON = JSON(none_as_null=True)


class QualityDay(Base):
    """One model, variant and day (UTC, by the prediction's inferenceTime): the metric and its counts."""

    __tablename__ = "quality_days"
    __table_args__ = (
        UniqueConstraint("model", "variant", "day", name="uq_quality_days_model_variant_day"),
        Index("ix_quality_days_model_day", "model", "day"),
        Index("ix_quality_days_dirty", "dirty"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128))
    variant: Mapped[str] = mapped_column(String(128))
    day: Mapped[date] = mapped_column(Date)
    metric: Mapped[str | None] = mapped_column(String(32))
    value: Mapped[float | None] = mapped_column(Float)  # None: no labels yet, or undefined (see `undefined`)
    predictions: Mapped[int] = mapped_column(Integer, default=0)  # captured that day (instances)
    labelled: Mapped[int] = mapped_column(Integer, default=0)  # pairs the value counts
    not_binary: Mapped[int] = mapped_column(Integer, default=0)  # labels left out: not 0/1 (classification)
    out_of_range: Mapped[int] = mapped_column(Integer, default=0)  # scores left out: outside [0, 1] (logloss)
    undefined: Mapped[str | None] = mapped_column(Text)  # why `value` is None although pairs exist
    # A prediction or a label of this day joined since the value was computed: recompute it.
    dirty: Mapped[bool] = mapped_column(Boolean, default=False)
    computed_at: Mapped[datetime | None]


class QualityPrediction(Base):
    """One captured prediction (one instance of a request), waiting for or joined with its label."""

    __tablename__ = "quality_predictions"
    __table_args__ = (Index("ix_quality_predictions_day_id", "day_id"),)

    key: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day_id: Mapped[int] = mapped_column(Integer)  # quality_days.id (no foreign key: bulk inserts stay cheap)
    score: Mapped[float] = mapped_column(Float)


class QualityLabel(Base):
    """One label (ground truth for one instance), as read from the labels prefix. No index but the key: a
    million labels a day are inserted, and only the daily prune reads them by model and day."""

    __tablename__ = "quality_labels"

    key: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    model: Mapped[str] = mapped_column(String(128))
    arrived: Mapped[date] = mapped_column(Date)  # the hour folder's day: when the label was collected
    label: Mapped[float] = mapped_column(Float)


class QualityProblem(Base):
    """What could not be used, counted by kind per model and day (formats.KINDS), with the latest example."""

    __tablename__ = "quality_problems"
    __table_args__ = (UniqueConstraint("model", "day", "kind", name="uq_quality_problems_model_day_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128))
    day: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(Integer, default=0)
    example: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class QualityCursor(Base):
    """How far one model has read one S3 prefix (two models may share a labels prefix). Every file in an hour folder before `settled` is read; the folders
    from `settled` on are listed again each pass (a file may land late) and skipped when quality_files has
    them, so a pass downloads only what is new."""

    __tablename__ = "quality_cursors"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(1024), primary_key=True)  # s3://bucket/path/ (capture or labels)
    kind: Mapped[str] = mapped_column(String(16))  # capture | labels
    variant: Mapped[str | None] = mapped_column(String(128))  # capture prefixes: the variant folder
    settled: Mapped[str] = mapped_column(String(13))  # "yyyy/mm/dd/hh"
    newest: Mapped[str | None] = mapped_column(String(1024))  # the newest key read
    files: Mapped[int] = mapped_column(Integer, default=0)
    lines: Mapped[int] = mapped_column(Integer, default=0)
    read_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)  # the last pass's failure on this prefix, None once it reads


class QualityFile(Base):
    """One S3 object being read or read, within the cursor's look-back: how many bytes are in the store."""

    __tablename__ = "quality_files"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(1024), primary_key=True)
    key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    hour: Mapped[str] = mapped_column(String(13))
    size: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes read and stored; the next read starts here
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    read_at: Mapped[datetime] = mapped_column(default=utcnow)


class QualityReference(Base):
    """What a variant's realized metric is compared with."""

    __tablename__ = "quality_references"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    variant: Mapped[str] = mapped_column(String(128), primary_key=True)
    metric: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    # offline: the run's evaluation; takeover: the first full window after it took all traffic; first: the
    # first full window of labelled data
    source: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)  # "run X of DAG Y", "2024-03-02 to 2024-03-08"
    labels: Mapped[int | None] = mapped_column(Integer)
    window_start: Mapped[date | None] = mapped_column(Date)
    window_end: Mapped[date | None] = mapped_column(Date)
    # No label can still arrive for its window (or it is an offline evaluation): it no longer changes.
    fixed: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class QualityEpisode(Base):
    """One decay of one variant: opened when its window is worse than the reference by more than the tolerance,
    closed once it recovers (or stops serving). One message when it opens, one when it closes."""

    __tablename__ = "quality_episodes"
    __table_args__ = (Index("ix_quality_episodes_model_opened_at", "model", "opened_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128))
    variant: Mapped[str] = mapped_column(String(128))
    # "<model>/<variant>" while open, NULL after: one open episode per variant (NULLs never collide).
    open_key: Mapped[str | None] = mapped_column(String(260), unique=True)
    metric: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(16))
    value: Mapped[float] = mapped_column(Float)  # the window's metric when it opened
    reference: Mapped[float] = mapped_column(Float)
    labels: Mapped[int] = mapped_column(Integer)
    tolerance: Mapped[float] = mapped_column(Float)
    window_start: Mapped[date] = mapped_column(Date)
    window_end: Mapped[date] = mapped_column(Date)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The decay message is queued (in the Slack outbox); its ts once Slack has it, for the thread's replies.
    announced_at: Mapped[datetime | None]
    message_ts: Mapped[str | None] = mapped_column(String(32))
    closed_at: Mapped[datetime | None]
    closed_how: Mapped[str | None] = mapped_column(String(16))  # recovered | retired
    closed_value: Mapped[float | None] = mapped_column(Float)
    # The retraining this decay started: automatically (retrain_on_decay) or from its Retrain button.
    retrain_requested_at: Mapped[datetime | None]
    retrain_by: Mapped[str | None] = mapped_column(String(64))  # a Slack user, or "retrain_on_decay"
    retrain_dag_id: Mapped[str | None] = mapped_column(String(250))
    retrain_run_id: Mapped[str | None] = mapped_column(String(250))
    retrain_error: Mapped[str | None] = mapped_column(Text)

    def when(self, column: str) -> datetime | None:
        return as_utc(getattr(self, column))


class QualityPass(Base):
    """Per model: the last measuring pass, where it read, what is missing, and the current windows."""

    __tablename__ = "quality_passes"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    seconds: Mapped[float | None] = mapped_column(Float)
    capture: Mapped[str | None] = mapped_column(Text)  # the capture destination read (s3://...)
    capture_source: Mapped[str | None] = mapped_column(String(32))  # endpoint config | models file
    # Why something is not measured: no capture configured, the endpoint could not be read, ...
    notes: Mapped[list | None] = mapped_column(NULLABLE_JSON)
    # {variant: {"value", "labels", "start", "end", "state", "reference", "worse_by"}} at the last pass
    windows: Mapped[dict | None] = mapped_column(NULLABLE_JSON)
    error: Mapped[str | None] = mapped_column(Text)
    backlog: Mapped[bool] = mapped_column(Boolean, default=False)  # the pass stopped at its time budget
    pruned_on: Mapped[date | None] = mapped_column(Date)  # the pairs are pruned once a day
