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
    stored_per_day: dict[int, int] = field(default_factory=dict)  # predictions only: quality_days.id -> stored


# Every join below starts from the batch (the stage) and probes the stored rows by primary key: SQLite keeps the
# order a CROSS JOIN gives (else it may scan the stored table through its day_id index to group by it).
def _stage(conn: Connection, name: str, columns: str) -> None:
    # A temporary table lives as long as the connection: created once per pooled connection, emptied per batch.
    conn.execute(text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({columns})"))
    conn.execute(text(f"DELETE FROM {name}"))
    if conn.dialect.name == "postgresql":
        # A batch meets the stored rows by key: 50,000 index probes. A hash join would read the whole table for
        # every batch (a second per million stored rows, and the table holds weeks); the stage has no statistics
        # to tell the planner so. For this transaction only.
        conn.execute(text("SET LOCAL enable_hashjoin = off"))
        conn.execute(text("SET LOCAL enable_mergejoin = off"))


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


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def add_predictions(conn: Connection, rows: list[tuple[int, int, float]], *, labels_waiting: bool = True) -> Joined:
    """rows: (key, quality_days.id, score), keys unique within the batch. The first prediction of a key is kept.
    labels_waiting=False (no label of the model is waiting for its prediction) skips looking for labels that
    the new predictions complete: the usual case, where predictions come first."""
    out = Joined()
    if not rows:
        return out
    _stage(conn, STAGE_PREDICTIONS, "key BIGINT PRIMARY KEY, day_id INTEGER NOT NULL, score FLOAT NOT NULL")
    _load(conn, STAGE_PREDICTIONS, ("key", "day_id", "score"), rows)
    if labels_waiting:
        for day_id, arrived, n in conn.execute(text(
                f"SELECT s.day_id, l.arrived, COUNT(*) FROM {STAGE_PREDICTIONS} s CROSS JOIN quality_labels l "
                "WHERE l.key = s.key AND NOT EXISTS (SELECT 1 FROM quality_predictions p WHERE p.key = s.key) "
                "GROUP BY s.day_id, l.arrived")):
            out.days[day_id] = out.days.get(day_id, 0) + n
            arrived = _as_date(arrived)
            out.labels_joined_late[arrived] = out.labels_joined_late.get(arrived, 0) + n
    # "WHERE true": SQLite's grammar needs it before ON CONFLICT after a SELECT.
    stored = conn.execute(text(
        f"INSERT INTO quality_predictions (key, day_id, score) SELECT key, day_id, score FROM {STAGE_PREDICTIONS} "
        "WHERE true ORDER BY key ON CONFLICT (key) DO NOTHING RETURNING day_id")).scalars().all()
    for day_id in stored:
        out.stored_per_day[day_id] = out.stored_per_day.get(day_id, 0) + 1
    out.stored = len(stored)
    out.duplicates = len(rows) - out.stored
    return out


def add_labels(conn: Connection, model: str, arrived: date, rows: list[tuple[int, float]]) -> Joined:
    """rows: (key, label), keys unique within the batch, all read from files of one day's folders. The first
    label of a key is kept."""
    out = Joined()
    if not rows:
        return out
    _stage(conn, STAGE_LABELS, "key BIGINT PRIMARY KEY, label FLOAT NOT NULL")
    _load(conn, STAGE_LABELS, ("key", "label"), rows)
    if conn.dialect.name == "postgresql":
        # One statement: the labels stored (not those already there) meet their predictions; a NULL day is a
        # label with no prediction yet. One probe per label instead of two (SQLite has no INSERT in a WITH).
        for day_id, n in conn.execute(text(
                f"WITH stored AS (INSERT INTO quality_labels (key, model, arrived, label) "
                f"SELECT key, :model, :arrived, label FROM {STAGE_LABELS} ORDER BY key "
                "ON CONFLICT (key) DO NOTHING RETURNING key) "
                "SELECT p.day_id, COUNT(*) FROM stored s LEFT JOIN quality_predictions p ON p.key = s.key "
                "GROUP BY p.day_id"), {"model": model, "arrived": arrived}):
            out.stored += n
            if day_id is None:
                out.unmatched = n
            else:
                out.days[day_id] = n
        out.duplicates = len(rows) - out.stored
        return out
    joined = 0
    for day_id, n in conn.execute(text(
            f"SELECT p.day_id, COUNT(*) FROM {STAGE_LABELS} s CROSS JOIN quality_predictions p "
            "WHERE p.key = s.key AND NOT EXISTS (SELECT 1 FROM quality_labels l WHERE l.key = s.key) "
            "GROUP BY p.day_id")):
        out.days[day_id] = n
        joined += n
    out.stored = conn.execute(text(
        f"INSERT INTO quality_labels (key, model, arrived, label) SELECT key, :model, :arrived, label "
        f"FROM {STAGE_LABELS} WHERE true ORDER BY key ON CONFLICT (key) DO NOTHING"),
        {"model": model, "arrived": arrived}).rowcount
    out.duplicates = len(rows) - out.stored
    out.unmatched = out.stored - joined
    return out


def pairs(conn: Connection, day_ids: list[int], chunk: int = 100_000):
    """(labels, scores) as float arrays, over the given days: the join, fetched in chunks of plain tuples straight
    from the driver (a server-side cursor on PostgreSQL), so a million pairs never exist as Python rows at once."""
    import numpy as np

    if not day_ids:
        return np.empty(0), np.empty(0)
    marks = ", ".join(str(int(i)) for i in day_ids)  # integers from our own table: safe to inline
    sql = ("SELECT l.label, p.score FROM quality_predictions p JOIN quality_labels l ON l.key = p.key "
           f"WHERE p.day_id IN ({marks})")
    raw = conn.connection.driver_connection
    postgres = conn.dialect.name == "postgresql"
    cursor = raw.cursor(name="quality_pairs") if postgres else raw.cursor()
    blocks = []
    try:
        cursor.execute(sql)
        while True:
            rows = cursor.fetchmany(chunk)
            if not rows:
                break
            blocks.append(np.array(rows, dtype=float).reshape(-1, 2))
    finally:
        cursor.close()
    if not blocks:
        return np.empty(0), np.empty(0)
    both = np.concatenate(blocks)
    return both[:, 0].copy(), both[:, 1].copy()
