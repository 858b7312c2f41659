"""The status capability's Slack wording: the board's lines, counts, freshness note and pages
(`/model status`), and the single-model view (`/model status <model>`). Data comes from bot/status/board.py
(the query and its classification) and bot/status/service.py (gathering); nothing here reads the store or AWS.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from bot.cost import messages as cost_text
from bot.cost.costs import ModelCost
from bot.scaling import messages as scaling_text
from bot.slack.formatting import split_line
from bot.slack.text import escape
from bot.store.base import utcnow

if TYPE_CHECKING:
    from bot.integrations import sagemaker
    from bot.status.board import Board, Row
    from bot.status.service import ModelStatus

# Slack's limits for the board, and how many models one page shows so that a page fits them.
PAGE_SIZE = 25
SECTION_LIMIT = 3000
BLOCK_LIMIT = 50
HEADER_LIMIT = 150
TEXT_LIMIT = 3900  # the text fallback: notifications and screen readers; the blocks carry the page
ELLIPSIS = "…"


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


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


def line_text(row: Row, now: datetime, stale_after: float, category: str, reasons: list[str]) -> str:
    """One model's line on the board, cut to 600 characters."""
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
    if "quality decayed" in reasons:
        parts.append(f"*quality decayed* (`/model quality {escape(row.name)}`)")
    if row.capacity:
        parts.append(row.capacity)
    text = f"{icon} *{escape(row.name)}* — " + "; ".join(parts)
    return cut(text, 600)


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


def render_board(board: Board, *, pattern: str | None, interval: float, notes: list[str] = ()) -> dict:
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


# ---------------------------------------------------------------- instances and cost (bot/cost, bot/scaling)

def capacity_text(cost: ModelCost, variants: list[dict], targets: dict) -> str:
    """"instances 2 (min 1, max 4) · $167.90/month": the serving variant's bounds, every variant's cost."""
    serving = max(variants, key=lambda v: float(v.get("weight") or 0), default=None)
    row = targets.get(serving["name"]) if serving else None
    bounds = scaling_text.status_bounds(row.observed, row.applied) if row is not None else ""
    text = f"instances {cost.instances}{bounds}"
    money_ = cost_text.model_summary(cost)
    return f"{text} · {money_}" if money_ else text


def capacity_lines(cost: ModelCost, targets: dict, problem: str | None) -> list[str]:
    """The single-model view: each variant's instances (min, max) and cost, the total, and a scaling problem."""
    parts = []
    for v in cost.variants:
        row = targets.get(v.variant)
        bounds = scaling_text.status_bounds(row.observed, row.applied) if row is not None else ""
        parts.append(f"{cost_text.variant_line(v)}{bounds}")
    lines = [f"Instances: {' · '.join(parts)}; total {cost_text.model_summary(cost)} (a month is 730 hours)"] \
        if parts else []
    if problem:
        lines.append(f":warning: Auto scaling: {escape(cut(problem, 400))}")
    return lines


# ---------------------------------------------------------------- the single-model view

def production_variant(state: sagemaker.EndpointState) -> str | None:
    if not state.variants:
        return None
    return max(state.variants, key=lambda v: v.current_weight).name


# ---------------------------------------------------------------- endpoint health

VARIANT_WORK = {"Creating": "starting", "Updating": "updating its capacity", "Deleting": "being removed",
                "ActivatingTraffic": "turning on its traffic", "Baking": "baking (watching its rollback alarms)"}


def _instances(v: sagemaker.Variant) -> str:
    if v.instance_count is None and v.desired_instance_count is None:
        return ""
    have, want = v.instance_count or 0, v.desired_instance_count
    if want is None or want == have:
        return f"{have} instance{'s' if have != 1 else ''}"
    return f"{have} of {want} instances"


def variant_health(v: sagemaker.Variant) -> str:
    """One variant's health: steady and its instances, or what SageMaker is doing to it and says about it."""
    instances = _instances(v)
    if v.statuses:
        doing = "; ".join(f"*{escape(VARIANT_WORK.get(status, status))}*"
                          + (f": {escape(cut(message, 300))}" if message else "") for status, message in v.statuses)
        return f"`{escape(v.name)}` {doing}" + (f" ({instances})" if instances else "")
    short = v.desired_instance_count is not None and (v.instance_count or 0) < v.desired_instance_count
    if short:
        return f":warning: `{escape(v.name)}` {instances} in service"
    return f"`{escape(v.name)}` healthy" + (f", {instances}" if instances else "")


def health_lines(st: sagemaker.EndpointState) -> list[str]:
    """The endpoint's health for `/model status <model>`: each variant, and SageMaker's failure reason."""
    lines = []
    if st.variants:
        lines.append("Health: " + " · ".join(variant_health(v) for v in st.variants))
    if st.failure_reason:
        reason = escape(cut(st.failure_reason, 1000))
        if st.status == "Failed":
            lines.append(f":rotating_light: SageMaker says endpoint `{escape(st.name)}` *failed*: {reason}")
        else:  # an update failed and SageMaker went back to the config before it
            lines.append(f":warning: SageMaker's last update of `{escape(st.name)}` failed: {reason} "
                         f"(the endpoint is {escape(st.status)} on `{escape(st.config_name)}`)")
    return lines


def model_lines(status: ModelStatus) -> list[str]:
    m = status.model
    lines = []
    if status.endpoint is not None:
        st = status.endpoint
        lines.append(f"Endpoint `{st.name}` ({st.status}) in {m.region}; production: `{production_variant(st)}`")
        lines.append(f"Traffic: {split_line(st)}")
        lines.extend(health_lines(st))
        lines.extend(status.capacity)
    else:
        lines.append(f":warning: {status.problem}")
    lines.append(f"Rollout: {status.rollout or 'none in progress'}")
    lines.append(f"Last run: {status.last_run or 'none seen yet'}")
    return lines


def render_statuses(statuses: list[ModelStatus], *, detail: bool = False) -> tuple[str, list[dict]]:
    if not statuses:
        text = "No models are registered. Add one to the models file (see models.example.toml)."
        return text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    title = f"Status of {statuses[0].model.name}" if detail else f"Status of {len(statuses)} models"
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": title}}]
    text_lines = [title]
    for status in statuses:
        lines = model_lines(status) + (status.details if detail else [])
        body = f"*{status.model.name}*\n" + "\n".join(lines)
        text_lines.append(body)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body[:2900]}})
        blocks.append({"type": "divider"})
    if len(blocks) > 50:  # Block Kit's limit; the text fallback still has everything
        blocks = blocks[:49] + [{"type": "context", "elements": [{"type": "mrkdwn", "text": "…more in the text version"}]}]
    return "\n".join(text_lines), blocks


def read_line(row) -> str:
    now = utcnow()
    who = "read live" if row.source == "live" else "read by the worker"
    if row.ok_at is None:
        line = f"_Never read successfully; last try {age_text((now - row.when('read_at')).total_seconds())} ago._"
    else:
        line = f"_Endpoint {who} {age_text(max(0.0, (now - row.when('ok_at')).total_seconds()))} ago._"
    if row.error and row.ok_at is not None:
        line += f"\n:warning: The last read failed: {cut(row.error, 300)}"
    return line
