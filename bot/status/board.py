"""`/model status` for many models, from the store: one query, attention first, in pages that fit Slack.

The query joins the registered names (a VALUES list) to the endpoint snapshot, each model's latest rollout and
latest run, and the worker's last pass. No AWS call: the worker keeps the snapshot (jobs/endpoint_snapshot.py).
"""

from __future__ import annotations

import fnmatch
import functools
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import JSON, Integer, String, and_, bindparam, case, cast, func, or_, select

from bot.cost import service as cost
from bot.quality.tables import QualityEpisode
from bot.rollouts.tables import Rollout
from bot.runs.tables import RunRecord
from bot.scaling import reconcile as scaling
from bot.status.messages import PAGE_SIZE, capacity_text, line_text, period
from bot.status.tables import WORKER_PASS, EndpointSnapshot, SnapshotPass
from bot.store.base import as_utc, utcnow

# A finished rollback stays on top this long: someone should look at why.
RECENT_ROLLBACK = timedelta(hours=24)
ROLLING_STATES = ("pending", "progressing", "baking")
# Order within "needs attention": the most urgent first.
SEVERITY = ("rolling back", "rolled back", "rollout paused", "rollout stuck", "run failing", "endpoint",
            "read failed", "quality decayed")
GLOB_CHARS = set("*?[")


def is_glob(text: str) -> bool:
    return any(c in GLOB_CHARS for c in text)


@dataclass
class Row:
    """One model as the query returns it."""

    name: str
    snap: dict | None  # endpoint_snapshots columns, None when the model was never read
    rollout: dict | None  # latest rollout's columns
    run: dict | None  # latest run's columns
    decayed: int = 0  # open quality decay episodes (bot/quality)
    capacity: str | None = None  # instances now (min, max) and $/month (bot/cost, bot/scaling)


@dataclass
class Line:
    name: str
    category: str  # attention | rolling | steady
    severity: int
    text: str


@dataclass
class Board:
    lines: list[Line]  # the page's lines, in order
    worker: dict | None  # the worker's last pass, None: it never ran
    now: datetime
    counts: dict[str, int] = field(default_factory=dict)  # over every model asked for, not just the page
    page: int = 1
    total: int = 0


@functools.lru_cache(maxsize=4)
def _statement(dialect: str):
    """Built once per dialect: only the names parameter changes between commands."""
    reg = _registered(dialect)
    latest_rollout = (select(func.max(Rollout.id)).where(Rollout.model == reg.c.value)
                      .correlate(reg).scalar_subquery())
    latest_run = (select(RunRecord.id).where(RunRecord.model == reg.c.value)
                  .order_by(RunRecord.queued_at.desc(), RunRecord.id.desc()).limit(1)
                  .correlate(reg).scalar_subquery())
    snap_cols = [EndpointSnapshot.model.label("s_model"), EndpointSnapshot.endpoint, EndpointSnapshot.region,
                 EndpointSnapshot.status, EndpointSnapshot.variants, EndpointSnapshot.read_at,
                 EndpointSnapshot.ok_at, EndpointSnapshot.error, EndpointSnapshot.source]
    roll_cols = [Rollout.id.label("r_id"), Rollout.state.label("r_state"), Rollout.step_index, Rollout.steps,
                 Rollout.stable_variant, Rollout.candidate_variant, Rollout.pending.label("r_pending"),
                 Rollout.last_error.label("r_error"), Rollout.ended_at.label("r_ended_at"),
                 Rollout.paused_reason, Rollout.resume_state]
    decayed = (select(func.count()).where(QualityEpisode.model == reg.c.value, QualityEpisode.closed_at.is_(None))
               .correlate(reg).scalar_subquery())
    run_cols = [RunRecord.id.label("run_id_pk"), RunRecord.state.label("run_state"), RunRecord.queued_at,
                RunRecord.ended_at.label("run_ended_at"), RunRecord.failed_tasks]
    pass_cols = [SnapshotPass.finished_at.label("p_finished_at"), SnapshotPass.seconds.label("p_seconds"),
                 SnapshotPass.interval_seconds.label("p_interval"), SnapshotPass.models.label("p_models")]
    # The order and the counts are computed here, in SQL, so Python only ever handles one page of rows: the
    # same rules as classify() (SEVERITY order), which words the lines.
    active = Rollout.state.in_(ROLLING_STATES + ("paused",))
    run_failing = or_(RunRecord.state == "failed",
                      and_(RunRecord.state == "running", cast(RunRecord.failed_tasks, String).notin_(["[]", "null"])))
    severity = case(
        (and_(Rollout.state == "rolled_back", Rollout.pending.is_not(None)), 0),
        (and_(Rollout.state == "rolled_back", Rollout.ended_at >= bindparam("recent_rollback_since")), 1),
        (Rollout.state == "paused", 2),
        (and_(active, Rollout.last_error.is_not(None)), 3),
        (run_failing, 4),
        (and_(EndpointSnapshot.endpoint.is_not(None), EndpointSnapshot.status.is_not(None),
              EndpointSnapshot.status != "InService"), 5),
        (EndpointSnapshot.error.is_not(None), 6),
        (decayed > 0, 7),
        else_=None,
    )
    category = case((severity.is_not(None), 0), (Rollout.state.in_(ROLLING_STATES), 1), else_=2)
    counts = [func.sum(case((category == k, 1), else_=0)).over().label(f"n_{k}") for k in (0, 1, 2)]
    q = (
        select(reg.c.value, *snap_cols, *roll_cols, *run_cols, *pass_cols, *counts, decayed.label("q_decayed"),
               func.count().over().label("n_total"))
        .select_from(reg)
        .outerjoin(EndpointSnapshot, EndpointSnapshot.model == reg.c.value)
        .outerjoin(Rollout, Rollout.id == latest_rollout)
        .outerjoin(RunRecord, RunRecord.id == latest_run)
        .outerjoin(SnapshotPass, SnapshotPass.name == WORKER_PASS)
        .order_by(category, severity, reg.c.value)
        .limit(bindparam("page_limit", type_=Integer))
        .offset(bindparam("page_offset", type_=Integer))
    )
    return q


def query(session, names: list[str], *, page: int = 1, now: datetime | None = None
          ) -> tuple[list[Row], dict | None, dict[str, int]]:
    """The one query: registered names ⟕ snapshot ⟕ latest rollout ⟕ latest run ⟕ worker pass, ordered
    attention first, one page of it, with the counts over all of them."""
    counts = {"attention": 0, "rolling": 0, "steady": 0, "total": 0}
    if not names:
        return [], _worker_only(session), counts
    q = _statement(session.get_bind().dialect.name)
    params = {"registered_names": json.dumps(names), "recent_rollback_since": (now or utcnow()) - RECENT_ROLLBACK,
              "page_limit": PAGE_SIZE, "page_offset": (page - 1) * PAGE_SIZE}
    rows, worker = [], None
    for r in session.connection().execute(q, params).mappings():
        counts = {"attention": r["n_0"], "rolling": r["n_1"], "steady": r["n_2"], "total": r["n_total"]}
        if r["p_finished_at"] is not None and worker is None:
            worker = {"finished_at": as_utc(r["p_finished_at"]), "seconds": r["p_seconds"],
                      "interval": r["p_interval"], "models": r["p_models"]}
        rows.append(Row(
            name=r["value"],
            snap=None if r["s_model"] is None else {
                "endpoint": r["endpoint"], "region": r["region"], "status": r["status"],
                "variants": r["variants"] or [], "read_at": as_utc(r["read_at"]), "ok_at": as_utc(r["ok_at"]),
                "error": r["error"], "source": r["source"]},
            rollout=None if r["r_id"] is None else {
                "id": r["r_id"], "state": r["r_state"], "step_index": r["step_index"], "steps": r["steps"] or [],
                "stable": r["stable_variant"], "candidate": r["candidate_variant"], "pending": r["r_pending"],
                "error": r["r_error"], "ended_at": as_utc(r["r_ended_at"]), "paused_reason": r["paused_reason"]},
            run=None if r["run_id_pk"] is None else {
                "state": r["run_state"], "queued_at": as_utc(r["queued_at"]),
                "ended_at": as_utc(r["run_ended_at"]), "failed_tasks": r["failed_tasks"] or []},
            decayed=r["q_decayed"] or 0,
        ))
    return rows, worker, counts


def _registered(dialect: str):
    """The names as a table from ONE bound JSON parameter: a VALUES list of 1,000 binds costs more to compile
    than the query costs to run, and a statement with one parameter is compiled once and cached."""
    payload = bindparam("registered_names", type_=String)
    if dialect == "postgresql":
        return (func.json_array_elements_text(cast(payload, JSON)).table_valued("value")
                .render_derived(name="registered"))
    return func.json_each(payload).table_valued("value").alias("registered")


def _worker_only(session) -> dict | None:
    p = session.get(SnapshotPass, WORKER_PASS)
    if p is None:
        return None
    return {"finished_at": as_utc(p.finished_at), "seconds": p.seconds, "interval": p.interval_seconds,
            "models": p.models}


def classify(row: Row, now: datetime) -> tuple[str, int, list[str]]:
    """(category, severity, reasons): attention reasons in SEVERITY order."""
    reasons: list[str] = []
    r, run, snap = row.rollout, row.run, row.snap
    if r is not None:
        if r["state"] == "rolled_back" and r["pending"] is not None:
            reasons.append("rolling back")
        elif r["state"] == "rolled_back" and r["ended_at"] and now - r["ended_at"] < RECENT_ROLLBACK:
            reasons.append("rolled back")
        if r["state"] == "paused":
            reasons.append("rollout paused")
        if r["state"] in ROLLING_STATES + ("paused",) and r["error"]:
            reasons.append("rollout stuck")
    if run is not None and (run["state"] == "failed" or (run["state"] == "running" and run["failed_tasks"])):
        reasons.append("run failing")
    if snap is not None and snap["endpoint"] and snap["status"] and snap["status"] != "InService":
        reasons.append("endpoint")
    if snap is not None and snap["error"]:
        reasons.append("read failed")
    if row.decayed:
        reasons.append("quality decayed")
    if reasons:
        return "attention", min(SEVERITY.index(x) for x in reasons), reasons
    if r is not None and r["state"] in ROLLING_STATES:
        return "rolling", 0, []
    return "steady", 0, []


def line_for(row: Row, now: datetime, stale_after: float) -> Line:
    category, severity, reasons = classify(row, now)
    return Line(name=row.name, category=category, severity=severity,
                text=line_text(row, now, stale_after, category, reasons))


def build(session, names: list[str], *, interval: float, page: int = 1, now: datetime | None = None) -> Board:
    now = now or utcnow()
    page = max(1, page)
    rows, worker, counts = query(session, names, page=page, now=now)
    if not rows and page > 1:  # past the end: the last page instead
        _, _, counts = query(session, names, page=1, now=now)
        page = max(1, -(-counts["total"] // PAGE_SIZE))
        rows, worker, counts = query(session, names, page=page, now=now)
    stale_after = 2 * period(worker, interval)
    _add_capacity(session, rows)
    lines = [line_for(r, now, stale_after) for r in rows]
    return Board(lines=lines, worker=worker, now=now, counts=counts, page=page, total=counts["total"])


def _add_capacity(session, rows: list[Row]) -> None:
    """Each row's instances, scaling bounds and cost: two small queries for the page (prices, scaling targets)."""
    endpoints = {r.name: (r.snap["region"], r.snap["variants"]) for r in rows if r.snap and r.snap["variants"]}
    if not endpoints:
        return
    roles = {r.name: cost.RolloutRole(r.rollout["state"], r.rollout["stable"], r.rollout["candidate"])
             for r in rows if r.rollout is not None}
    costs = cost.costs_of(session, endpoints, roles)
    targets, _ = scaling.status_of(session, list(endpoints))
    for r in rows:
        if r.name in costs:
            r.capacity = capacity_text(costs[r.name], r.snap["variants"], targets.get(r.name, {}))


def select_names(all_names: list[str], pattern: str | None) -> list[str]:
    if not pattern:
        return list(all_names)
    return [n for n in all_names if fnmatch.fnmatchcase(n, pattern)]


