"""Reading what is new under one S3 prefix (a variant's capture folder, or the labels), line by line, into the
join, with a cursor so a pass downloads nothing it has read before.

Layout: <prefix>yyyy/mm/dd/hh/<file>.jsonl. Keys sort by hour, so a pass lists from the cursor's `settled` hour
on. Files may land late in an hour already listed (SageMaker uploads capture every few minutes; a team may upload
labels into an earlier hour), so the last LOOKBACK hours before the newest key are listed again every pass and
a file is skipped when quality_files says it is read. A file is read from the byte where the last flush stopped:
every BATCH lines, its rows, its problems and its new offset are committed together, so a worker killed in the
middle of a file neither loses nor double-counts a line, and a transaction never holds the database for long.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from bot.integrations.s3 import S3ReadError
from bot.quality import formats, join
from bot.quality.tables import QualityCursor, QualityDay, QualityFile, QualityProblem
from bot.store.base import utcnow
from bot.store.foundation import insert_ignore

log = logging.getLogger(__name__)

BATCH = 50_000  # lines per flush: a few MB of rows, one short transaction
CAPTURE_LOOKBACK_HOURS = 3
LABELS_LOOKBACK_HOURS = 48
OTHER = "other"  # quality_files.hour of a file outside the yyyy/mm/dd/hh layout (counted once, kept)


def hour_text(at: datetime) -> str:
    return f"{at:%Y/%m/%d/%H}"


def _insert(conn: Connection):
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def bump_problems(conn: Connection, model: str, counts: Counter, examples: dict) -> None:
    """Adds to the problem counters of (day, kind); a negative count takes back (a label that joined late)."""
    if not counts:
        return
    table = QualityProblem.__table__
    now = utcnow()
    rows = [{"model": model, "day": day, "kind": kind, "count": n, "example": examples.get((day, kind)),
             "updated_at": now} for (day, kind), n in counts.items() if n]
    if not rows:
        return
    ins = _insert(conn)(table)
    conn.execute(ins.on_conflict_do_update(
        index_elements=["model", "day", "kind"],
        set_={"count": table.c.count + ins.excluded.count,
              "example": func.coalesce(ins.excluded.example, table.c.example),
              "updated_at": ins.excluded.updated_at}), rows)


class Days:
    """quality_days ids of one model, made on first use (each in its own short transaction)."""

    def __init__(self, store, model: str):
        self.store, self.model = store, model
        self._ids: dict[tuple[str, date], int] = {}

    def id(self, variant: str, day: date) -> int:
        found = self._ids.get((variant, day))
        if found is not None:
            return found
        with self.store.session() as s:
            insert_ignore(s, QualityDay.__table__, dict(
                model=self.model, variant=variant, day=day, predictions=0, labelled=0, not_binary=0, out_of_range=0,
                dirty=False), ["model", "variant", "day"])
            found = s.scalar(select(QualityDay.id).where(QualityDay.model == self.model, QualityDay.variant == variant,
                                                         QualityDay.day == day))
        self._ids[(variant, day)] = found
        return found


@dataclass
class Sink:
    """Rows of one file on their way to the join, and what could not be read, by (day, kind)."""

    model: str
    problems: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def problem(self, day: date, kind: str, where: str, why: str, at: int | None = None) -> None:
        self.problems[(day, kind)] += 1
        if (day, kind) not in self.examples:
            place = where if at is None else f"{where} (byte {at})"
            self.examples[(day, kind)] = f"{place}: {why}"[:500]

    def discard(self) -> None:
        """Forgets what was read since the last flush: it is read again from the committed offset."""
        self.rows = {}
        self.problems, self.examples = Counter(), {}

    def take_problems(self) -> tuple[Counter, dict]:
        counts, examples = self.problems, self.examples
        self.problems, self.examples = Counter(), {}
        return counts, examples


class CaptureSink(Sink):
    def __init__(self, model: str, variant: str, days: Days, labels_since: date):
        super().__init__(model)
        self.variant, self.days, self.labels_since = variant, days, labels_since
        self.rows: dict[int, tuple[int, int, float]] = {}
        self._day_ids: dict[date, int] = {}

    def size(self) -> int:
        return len(self.rows)

    def line(self, raw: bytes, fallback: date, where: str, at: int) -> None:
        try:
            record_id, day, predictions = formats.parse_capture(raw, fallback)
        except formats.Unreadable as bad:
            self.problem(fallback, bad.kind, where, bad.why, at)
            return
        day_id = self._day_ids.get(day)
        if day_id is None:
            day_id = self._day_ids[day] = self.days.id(self.variant, day)
        n = len(predictions)
        model, rows = self.model, self.rows
        for i, score in enumerate(predictions):
            key = formats.join_key(model, record_id, i, n)
            if key in rows:
                self.problem(fallback, formats.PREDICTION_DUPLICATE, where, f"id {record_id[:80]!r} captured twice",
                             at)
                continue
            rows[key] = (key, day_id, score)

    def flush(self, conn: Connection) -> None:
        rows = list(self.rows.values())
        self.rows = {}
        result = join.add_predictions(conn, rows,
                                      labels_waiting=labels_waiting(conn, self.model, self.labels_since))
        for day_id, n in result.stored_per_day.items():
            conn.execute(update(QualityDay).where(QualityDay.id == day_id)
                         .values(predictions=QualityDay.predictions + n))
        if result.duplicates:
            self.problems[(self._oldest_day(), formats.PREDICTION_DUPLICATE)] += result.duplicates
        late = Counter({(arrived, formats.LABEL_UNMATCHED): -n for arrived, n in result.labels_joined_late.items()})
        bump_problems(conn, self.model, late, {})
        _mark_dirty(conn, result.days)
        counts, examples = self.take_problems()
        bump_problems(conn, self.model, counts, examples)

    def _oldest_day(self) -> date:
        return min(self._day_ids, default=utcnow().date())


class LabelSink(Sink):
    def __init__(self, model: str):
        super().__init__(model)
        self.rows: dict[int, tuple[int, float]] = {}
        self.arrived: date | None = None

    def size(self) -> int:
        return len(self.rows)

    def line(self, raw: bytes, fallback: date, where: str, at: int) -> None:
        self.arrived = fallback
        try:
            record_id, labels = formats.parse_label(raw)
        except formats.Unreadable as bad:
            self.problem(fallback, bad.kind, where, bad.why, at)
            return
        n = len(labels)
        model, rows = self.model, self.rows
        for i, label in enumerate(labels):
            key = formats.join_key(model, record_id, i, n)
            if key in rows:
                self.problem(fallback, formats.LABEL_DUPLICATE, where, f"id {record_id[:80]!r} labelled twice", at)
                continue
            rows[key] = (key, label)

    def flush(self, conn: Connection) -> None:
        rows = list(self.rows.values())
        self.rows = {}
        if rows:
            result = join.add_labels(conn, self.model, self.arrived, rows)
            if result.duplicates:
                self.problems[(self.arrived, formats.LABEL_DUPLICATE)] += result.duplicates
            if result.unmatched:
                self.problems[(self.arrived, formats.LABEL_UNMATCHED)] += result.unmatched
            _mark_dirty(conn, result.days)
        counts, examples = self.take_problems()
        bump_problems(conn, self.model, counts, examples)


def labels_waiting(conn: Connection, model: str, since: date) -> bool:
    """Whether a label of the model read since `since` (older ones are pruned) still waits for its prediction:
    the counter of labels that join nothing is above 0."""
    waiting = conn.execute(select(func.sum(QualityProblem.count)).where(
        QualityProblem.model == model, QualityProblem.kind == formats.LABEL_UNMATCHED,
        QualityProblem.day >= since)).scalar()
    return bool(waiting and waiting > 0)


def _mark_dirty(conn: Connection, day_ids) -> None:
    ids = list(day_ids)
    if ids:
        conn.execute(update(QualityDay).where(QualityDay.id.in_(ids)).values(dirty=True))


@dataclass(frozen=True)
class Source:
    """One S3 prefix to read: s3://bucket/prefix/ holding yyyy/mm/dd/hh/ folders."""

    model: str
    kind: str  # capture | labels
    bucket: str
    prefix: str  # ends with "/"
    region: str
    variant: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def lookback(self) -> timedelta:
        return timedelta(hours=CAPTURE_LOOKBACK_HOURS if self.kind == "capture" else LABELS_LOOKBACK_HOURS)


@dataclass
class ReadStats:
    files: int = 0
    lines: int = 0
    bytes: int = 0
    stopped: str | None = None  # "time budget" when the pass must go on next time
    error: str | None = None  # S3 failed; what is stored stays, the rest is read next pass


def _cursor(store, source: Source, first: datetime) -> QualityCursor:
    with store.session() as s:
        insert_ignore(s, QualityCursor.__table__, dict(
            prefix=source.uri, model=source.model, kind=source.kind, variant=source.variant,
            settled=hour_text(first), files=0, lines=0), ["model", "prefix"])
        row = s.get(QualityCursor, (source.model, source.uri))
        s.expunge(row)
        return row


def _ledger(store, source: Source) -> dict[str, QualityFile]:
    with store.session() as s:
        rows = list(s.scalars(select(QualityFile).where(QualityFile.model == source.model,
                                                        QualityFile.prefix == source.uri)))
        for r in rows:
            s.expunge(r)
        return {r.key: r for r in rows}


def read_source(services, source: Source, sink: Sink, *, first: datetime, deadline: float) -> ReadStats:
    """Reads every new line under `source` into `sink` until done or `deadline` (time.monotonic()). Never raises
    for S3 or a bad line: an S3 failure is in the stats (and on the cursor), a bad line in the sink's problems."""
    store, s3 = services.store, services.s3
    stats = ReadStats()
    cursor = _cursor(store, source, first)
    ledger = _ledger(store, source)
    newest = cursor.newest
    unfinished: str | None = None  # the hour of the first file left unread or part-read
    try:
        for obj in s3.list_keys(source.bucket, source.prefix, source.region,
                                start_after=source.prefix + cursor.settled):
            known = ledger.get(obj.key)
            if known is not None and known.done:
                continue
            hour = formats.hour_of(obj.key[len(source.prefix):])
            if hour is None:
                _outside_layout(store, source, sink, obj)
                continue
            if time.monotonic() > deadline and (stats.lines or stats.files):  # each pass reads at least a batch
                stats.stopped = "time budget"
                unfinished = unfinished or hour
                break
            finished = _read_file(services, source, sink, obj, hour, known.offset if known else 0, stats, deadline)
            newest = max(newest or "", obj.key)
            if not finished:
                unfinished = unfinished or hour
                stats.stopped = "time budget"
                break
    except S3ReadError as exc:
        sink.discard()
        stats.error = str(exc)
        log.warning("quality: %s: %s", source.uri, exc)
    _advance(store, source, cursor, newest, unfinished, stats)
    return stats


def _outside_layout(store, source: Source, sink: Sink, obj) -> None:
    """A file that is not in yyyy/mm/dd/hh/: another tool's, counted once, never read."""
    kind = formats.CAPTURE_MALFORMED if source.kind == "capture" else formats.LABEL_MALFORMED
    sink.problem(utcnow().date(), kind, f"s3://{source.bucket}/{obj.key}",
                 "not in a yyyy/mm/dd/hh/ folder, so not read")
    with store.writing() as conn:
        counts, examples = sink.take_problems()
        bump_problems(conn, source.model, counts, examples)
        _record_file(conn, source, obj, OTHER, obj.size, done=True)


def _record_file(conn: Connection, source: Source, obj, hour: str, offset: int, *, done: bool) -> None:
    table = QualityFile.__table__
    ins = _insert(conn)(table)
    values = {"model": source.model, "prefix": source.uri, "key": obj.key, "hour": hour, "size": obj.size, "offset": offset, "done": done,
              "read_at": utcnow()}
    conn.execute(ins.values(**values).on_conflict_do_update(
        index_elements=["model", "prefix", "key"], set_={"offset": offset, "done": done, "read_at": values["read_at"]}))


def _read_file(services, source: Source, sink: Sink, obj, hour: str, offset: int, stats: ReadStats,
               deadline: float) -> bool:
    """Reads one file from `offset`, committing every BATCH lines. False: stopped at the deadline (resumed from
    the committed offset next pass). Raises S3ReadError (what was committed stays)."""
    fallback = formats.hour_day(hour)
    where_file = f"s3://{source.bucket}/{obj.key}"
    lines = 0
    position = offset
    for raw, end in services.s3.stream_lines(source.bucket, obj.key, source.region, offset=offset):
        if raw is None:
            kind = formats.CAPTURE_MALFORMED if source.kind == "capture" else formats.LABEL_MALFORMED
            sink.problem(fallback, kind, where_file, "a line longer than 32 MB", position)
        elif raw.strip():
            sink.line(raw, fallback, where_file, position)
        position = end
        lines += 1
        if sink.size() >= BATCH:
            _flush(services.store, source, sink, obj, hour, position, lines, done=False, stats=stats)
            lines = 0
            if time.monotonic() > deadline:
                stats.bytes += position - offset
                return False
    _flush(services.store, source, sink, obj, hour, max(position, obj.size), lines, done=True, stats=stats)
    stats.bytes += position - offset
    return True


def _flush(store, source: Source, sink: Sink, obj, hour: str, offset: int, lines: int, *, done: bool,
           stats: ReadStats) -> None:
    with store.writing() as conn:
        sink.flush(conn)
        _record_file(conn, source, obj, hour, offset, done=done)
        conn.execute(update(QualityCursor).where(QualityCursor.model == source.model,
                                                 QualityCursor.prefix == source.uri).values(
            files=QualityCursor.files + (1 if done else 0), lines=QualityCursor.lines + lines, read_at=utcnow(),
            error=None))
    stats.lines += lines
    stats.files += 1 if done else 0


def _advance(store, source: Source, cursor: QualityCursor, newest: str | None, unfinished: str | None,
             stats: ReadStats) -> None:
    """Moves `settled` up to LOOKBACK before the newest key read (never past a file left unfinished, never back),
    and forgets the files of the hours before it."""
    settled = cursor.settled
    newest_hour = formats.hour_of(newest[len(source.prefix):]) if newest else None
    if newest_hour:
        y, m, d, h = (int(x) for x in newest_hour.split("/"))
        candidate = hour_text(datetime(y, m, d, h) - source.lookback)
        if unfinished and unfinished < candidate:
            candidate = unfinished
        settled = max(settled, candidate)
    with store.session() as s:
        s.execute(update(QualityCursor).where(QualityCursor.model == source.model,
                                              QualityCursor.prefix == source.uri).values(
            settled=settled, newest=newest, error=stats.error))
        if settled != cursor.settled:
            s.execute(delete(QualityFile).where(QualityFile.model == source.model, QualityFile.prefix == source.uri,
                                                QualityFile.hour < settled,
                                                QualityFile.hour != OTHER))
