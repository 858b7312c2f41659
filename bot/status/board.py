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

from bot.rollouts.tables import Rollout
from bot.runs.tables import RunRecord
from bot.slack.text import escape
from bot.status.tables import WORKER_PASS, EndpointSnapshot, SnapshotPass
from bot.store.base import as_utc, utcnow

PAGE_SIZE = 25
SECTION_LIMIT = 3000
BLOCK_LIMIT = 50
HEADER_LIMIT = 150
TEXT_LIMIT = 3900  # the text fallback: notifications and screen readers; the blocks carry the page
ELLIPSIS = "…"
# A finished rollback stays on top this long: someone should look at why.
RECENT_ROLLBACK = timedelta(hours=24)
ROLLING_STATES = ("pending", "progressing", "baking")
# Order within "needs attention": the most urgent first.
SEVERITY = ("rolling back", "rolled back", "rollout paused", "rollout stuck", "run failing", "endpoint",
            "read failed")
GLOB_CHARS = set("*?[")


def is_glob(text: str) -> bool:
    return any(c in GLOB_CHARS for c in text)


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


@dataclass
class Row:
    """One model as the query returns it."""

    name: str
    snap: dict | None  # endpoint_snapshots columns, None when the model was never read
    rollout: dict | None  # latest rollout's columns
    run: dict | None  # latest run's columns


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
        else_=None,
    )
    category = case((severity.is_not(None), 0), (Rollout.state.in_(ROLLING_STATES), 1), else_=2)
    counts = [func.sum(case((category == k, 1), else_=0)).over().label(f"n_{k}") for k in (0, 1, 2)]
    q = (
        select(reg.c.value, *snap_cols, *roll_cols, *run_cols, *pass_cols, *counts,
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


def period(worker: dict | None, interval: float) -> float:
    """How often the worker reads each endpoint in practice."""
    if worker is None:
        return interval
    return max(worker["interval"] or interval, worker["seconds"] or 0.0)


def age_text(seconds: float) -> str:
    if seconds < 90:
        return f"{int(seconds)} s"
    if seconds < 5400:
        return f"{int(seconds // 60)} min"
    if seconds < 172800:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} days"


def traffic(variants: list[dict]) -> str:
    if not variants:
        return "no variants"
    total = sum(float(v.get("weight") or 0) for v in variants)
    parts = []
    for v in variants:
        pct = 100 * float(v.get("weight") or 0) / total if total else 0.0
        hw = ""
        if v.get("instance_type"):
            hw = f" {v['instance_type']}" + (f"×{v['instance_count']}" if v.get("instance_count") is not None else "")
        parts.append(f"`{escape(v['name'])}` {pct:.0f}%{hw}")
    return " · ".join(parts)


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
    if reasons:
        return "attention", min(SEVERITY.index(x) for x in reasons), reasons
    if r is not None and r["state"] in ROLLING_STATES:
        return "rolling", 0, []
    return "steady", 0, []


def _rollout_words(r: dict, now: datetime) -> str:
    state = r["state"]
    pair = f"`{escape(r['stable'])}` → `{escape(r['candidate'])}`"
    steps = r["steps"] or [100]
    pct = steps[min(r["step_index"], len(steps) - 1)]
    if state == "rolled_back":
        verb = "rolling back" if r["pending"] is not None else "rolled back"
        when = f" {age_text((now - r['ended_at']).total_seconds())} ago" if r["ended_at"] else ""
        return f"{verb} {pair}{when}"
    if state == "paused":
        why = f": {escape(cut(r['paused_reason'], 80))}" if r["paused_reason"] else ""
        return f"rollout {pair} paused at {pct:g}%{why}"
    if state == "progressing":
        return f"rolling out {pair}, step {r['step_index'] + 1}/{len(steps)} ({pct:g}%)"
    if state == "baking":
        return f"rolling out {pair}, baking at 100%"
    if state == "pending":
        return f"rollout {pair} starting"
    return ""  # promoted / aborted long ago: nothing to say in a one-line view


def line_for(row: Row, now: datetime, stale_after: float) -> Line:
    category, severity, reasons = classify(row, now)
    icon = {"attention": ":red_circle:", "rolling": ":large_blue_circle:", "steady": ":white_circle:"}[category]
    parts: list[str] = []
    snap = row.snap
    if row.rollout is not None:
        words = _rollout_words(row.rollout, now)
        if words:
            parts.append(words)
        if "rollout stuck" in reasons:
            parts.append(f"last error: {escape(cut(row.rollout['error'], 100))}")
    if snap is None:
        parts.append("endpoint not read yet (registered since the worker's last pass)")
    elif not snap["endpoint"]:
        parts.append("no endpoint registered")
    else:
        if snap["variants"]:
            parts.append(traffic(snap["variants"]))
        if snap["status"] and snap["status"] != "InService":
            parts.append(f"endpoint `{escape(snap['endpoint'])}` is *{escape(snap['status'])}*")
        if snap["error"]:
            parts.append(f":warning: {escape(cut(snap['error'], 160))}")
        seen = snap["ok_at"] or snap["read_at"]
        age = (now - seen).total_seconds() if seen else None
        if snap["ok_at"] is None:
            parts.append("_never read successfully_")
        elif age is not None and age > stale_after:
            parts.append(f"_data {age_text(age)} old_")
    if row.run is not None:
        run = row.run
        if "run failing" in reasons:
            failed = ", ".join(run["failed_tasks"][:3])
            parts.append(f"run failed{f' ({escape(failed)})' if failed else ''}"
                         + (f" {age_text((now - run['ended_at']).total_seconds())} ago" if run["ended_at"] else ""))
        elif run["state"] in ("running", "queued"):
            parts.append(f"run {run['state']}")
    text = f"{icon} *{escape(row.name)}* — " + "; ".join(parts)
    return Line(name=row.name, category=category, severity=severity, text=cut(text, 600))


def build(session, names: list[str], *, interval: float, page: int = 1, now: datetime | None = None) -> Board:
    now = now or utcnow()
    page = max(1, page)
    rows, worker, counts = query(session, names, page=page, now=now)
    if not rows and page > 1:  # past the end: the last page instead
        _, _, counts = query(session, names, page=1, now=now)
        page = max(1, -(-counts["total"] // PAGE_SIZE))
        rows, worker, counts = query(session, names, page=page, now=now)
    stale_after = 2 * period(worker, interval)
    lines = [line_for(r, now, stale_after) for r in rows]
    return Board(lines=lines, worker=worker, now=now, counts=counts, page=page, total=counts["total"])


def select_names(all_names: list[str], pattern: str | None) -> list[str]:
    if not pattern:
        return list(all_names)
    return [n for n in all_names if fnmatch.fnmatchcase(n, pattern)]


def count_line(board: Board, total: int, pattern: str | None) -> str:
    c = board.counts
    what = f"{total} model{'s' if total != 1 else ''}"
    if pattern:
        what += f" match `{escape(pattern)}`"
    return f"{what}: {c['attention']} need attention, {c['rolling']} rolling out, {c['steady']} steady"


def freshness(board: Board, interval: float) -> str:
    w = board.worker
    if w is None:
        return ":hourglass: The worker (`python -m jobs`) has not taken an endpoint snapshot yet."
    ago = (board.now - w["finished_at"]).total_seconds()
    note = (f"Endpoints as the worker read them {age_text(max(0.0, ago))} ago "
            f"(a pass every {age_text(period(w, interval))}); `/model status <model> --live` reads one now.")
    if ago > 2 * period(w, interval):
        note = f":warning: The worker's last endpoint snapshot finished {age_text(ago)} ago: is it running? " + note
    return note


def render(board: Board, *, pattern: str | None, interval: float, notes: list[str] = ()) -> dict:
    """One page as an ephemeral reply: {"text", "blocks"}, within Slack's limits (50 blocks, 3,000 a section)."""
    total = board.total
    pages = max(1, -(-total // PAGE_SIZE))
    page = board.page
    shown = board.lines
    title = cut("Model status" + (f", page {page} of {pages}" if pages > 1 else ""), HEADER_LIMIT)
    counts = count_line(board, total, pattern)
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": title}},
                          {"type": "section", "text": {"type": "mrkdwn", "text": cut(f"*{counts}*", SECTION_LIMIT)}}]
    context = [freshness(board, interval), *notes]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(t, SECTION_LIMIT)}
                                                   for t in context[:10]]})
    if not shown:
        empty = (f"No registered model matches `{escape(pattern)}`." if pattern else
                 "No models are registered. Add one to the models file (see models.example.toml).")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": empty}})
    chunk: list[str] = []
    for line in shown:
        if chunk and len("\n".join(chunk + [line.text])) > SECTION_LIMIT:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
            chunk = []
        chunk.append(line.text)
    if chunk:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
    if pages > 1:
        target = f" {escape(pattern)}" if pattern else ""
        nav = [f"Page {page} of {pages}."]
        if page < pages:
            nav.append(f"Next: `/model status{target} --page {page + 1}`.")
        if not pattern:
            nav.append("Filter with a glob: `/model status fraud-*`.")
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " ".join(nav)}]})
    blocks = blocks[:BLOCK_LIMIT]
    text = cut("\n".join([title, counts] + [l.text for l in shown]), TEXT_LIMIT)
    return {"text": text, "blocks": blocks}
