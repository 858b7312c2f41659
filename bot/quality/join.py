"""Bulk writes of the prediction-label join, in the caller's transaction: a batch of predictions or labels goes
into a temporary stage table in one round trip (PostgreSQL COPY, SQLite executemany), and four set-based
statements do the rest: drop what is already stored (counted as duplicates), insert the new rows, and find which
days the new rows complete a pair for.

Row-by-row ORM inserts cost ~20 s per million rows on PostgreSQL here; staging costs a few (bench/quality.py).
The statements are the same on both databases; only the load into the stage differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import text
from sqlalchemy.engine import Connection

STAGE_PREDICTIONS = "quality_stage_predictions"
STAGE_LABELS = "quality_stage_labels"


@dataclass
class Joined:
    """What one batch changed: rows stored, rows already there, and the days whose pairs it completed."""

    stored: int = 0
    duplicates: int = 0
    days: dict[int, int] = field(default_factory=dict)  # quality_days.id -> pairs completed by this batch
    # Predictions only: labels read before their prediction, now joined, by the label's arrival day.
    labels_joined_late: dict[date, int] = field(default_factory=dict)
    unmatched: int = 0  # labels only: stored labels whose prediction is not (yet) stored


def _stage(conn: Connection, name: str, columns: str) -> None:
    # A temporary table lives as long as the connection: created once per pooled connection, emptied per batch.
    conn.execute(text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({columns})"))
    conn.execute(text(f"DELETE FROM {name}"))


def _load(conn: Connection, name: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    raw = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    cur = raw.cursor()
    try:
        cur.executemany(f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)
    finally:
        cur.close()


def add_predictions(conn: Connection, rows: list[tuple[int, int, float]]) -> Joined:
    """rows: (key, quality_days.id, score), keys unique within the batch. The first prediction of a key is kept."""
    out = Joined()
    if not rows:
        return out
    _stage(conn, STAGE_PREDICTIONS, "key BIGINT PRIMARY KEY, day_id INTEGER NOT NULL, score FLOAT NOT NULL")
    _load(conn, STAGE_PREDICTIONS, ("key", "day_id", "score"), rows)
    out.duplicates = conn.execute(text(
        f"DELETE FROM {STAGE_PREDICTIONS} WHERE key IN (SELECT s.key FROM {STAGE_PREDICTIONS} s "
        "JOIN quality_predictions p ON p.key = s.key)")).rowcount
    out.stored = conn.execute(text(
        f"INSERT INTO quality_predictions (key, day_id, score) SELECT key, day_id, score FROM {STAGE_PREDICTIONS} "
        "ORDER BY key")).rowcount
    for day_id, arrived, n in conn.execute(text(
            f"SELECT s.day_id, l.arrived, COUNT(*) FROM {STAGE_PREDICTIONS} s JOIN quality_labels l ON l.key = s.key "
            "GROUP BY s.day_id, l.arrived")):
        out.days[day_id] = out.days.get(day_id, 0) + n
        arrived = arrived if isinstance(arrived, date) else date.fromisoformat(str(arrived))
        out.labels_joined_late[arrived] = out.labels_joined_late.get(arrived, 0) + n
    return out


def stored_per_day(conn: Connection) -> dict[int, int]:
    """After add_predictions: the batch's stored predictions per day (the stage holds only those)."""
    return {day_id: n for day_id, n in conn.execute(text(
        f"SELECT day_id, COUNT(*) FROM {STAGE_PREDICTIONS} GROUP BY day_id"))}


def add_labels(conn: Connection, model: str, arrived: date, rows: list[tuple[int, float]]) -> Joined:
    """rows: (key, label), keys unique within the batch, all read from files of one day's folders. The first
    label of a key is kept."""
    out = Joined()
    if not rows:
        return out
    _stage(conn, STAGE_LABELS, "key BIGINT PRIMARY KEY, label FLOAT NOT NULL")
    _load(conn, STAGE_LABELS, ("key", "label"), rows)
    out.duplicates = conn.execute(text(
        f"DELETE FROM {STAGE_LABELS} WHERE key IN (SELECT s.key FROM {STAGE_LABELS} s "
        "JOIN quality_labels l ON l.key = s.key)")).rowcount
    out.stored = conn.execute(text(
        f"INSERT INTO quality_labels (key, model, arrived, label) SELECT key, :model, :arrived, label "
        f"FROM {STAGE_LABELS} ORDER BY key"), {"model": model, "arrived": arrived}).rowcount
    joined = 0
    for day_id, n in conn.execute(text(
            f"SELECT p.day_id, COUNT(*) FROM {STAGE_LABELS} s JOIN quality_predictions p ON p.key = s.key "
            "GROUP BY p.day_id")):
        out.days[day_id] = n
        joined += n
    out.unmatched = out.stored - joined
    return out


def pairs(conn: Connection, day_ids: list[int], chunk: int = 100_000):
    """(labels, scores) as float arrays, over the given days: the join, read in chunks so a million pairs never
    exist as Python tuples at once."""
    import numpy as np

    labels, scores = [], []
    if not day_ids:
        return np.empty(0), np.empty(0)
    marks = ", ".join(str(int(i)) for i in day_ids)  # integers from our own table: safe to inline
    result = conn.execute(text(
        "SELECT l.label, p.score FROM quality_predictions p JOIN quality_labels l ON l.key = p.key "
        f"WHERE p.day_id IN ({marks})").execution_options(stream_results=True))
    for part in result.partitions(chunk):
        block = np.asarray(part, dtype=float).reshape(-1, 2)
        labels.append(block[:, 0])
        scores.append(block[:, 1])
    if not labels:
        return np.empty(0), np.empty(0)
    return np.concatenate(labels), np.concatenate(scores)
