"""The quality capability's Slack wording: the decay message and its Retrain button, the recovery, the retrain
replies, `/model quality`, and the status board's words. Data comes from episodes.py and service.py; nothing
here reads the store, S3 or Slack."""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING, Iterable

from bot.quality import formats
from bot.slack.formatting import ago
from bot.slack.text import code, escape, mention

if TYPE_CHECKING:
    from bot.quality.chart_data import DayRow
    from bot.quality.service import Report
    from bot.quality.tables import QualityEpisode

RETRAIN_ACTION = "quality_retrain"
TABLE_DAYS = 14  # days shown as numbers in a message; the chart shows more
TABLE_CHARS = 2_700
BETTER = {"maximize": "higher is better", "minimize": "lower is better"}


def number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3f}"


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:2990]}}


def _context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:2990]}]}


def day_table(rows: Iterable["DayRow"], metric: str, *, variants: bool = False, limit: int = TABLE_DAYS) -> str:
    """Daily values as a code block: day, [variant,] metric, labels, predictions, and why a day has no value."""
    rows = list(rows)[-limit:] if limit else list(rows)
    if not rows:
        return ""
    head = f"{'day':<11}" + (f"{'variant':<12}" if variants else "") + f"{metric:>9}{'labels':>9}{'captured':>10}"
    lines = [head]
    for r in rows:
        line = f"{r.day:%Y-%m-%d} " + (f"{r.variant[:11]:<12}" if variants else "")
        line += f"{number(r.value):>9}{r.labelled:>9,}{r.predictions:>10,}"
        notes = []
        if r.undefined and r.labelled:
            notes.append(r.undefined)
        if r.not_binary:
            notes.append(f"{r.not_binary:,} labels not 0/1 left out")
        if r.out_of_range:
            notes.append(f"{r.out_of_range:,} scores outside [0, 1] left out")
        if notes:
            line += "  " + "; ".join(notes)
        lines.append(line)
    while len(lines) > 2 and sum(len(x) + 1 for x in lines) > TABLE_CHARS:
        del lines[1]  # the oldest day goes first: a section holds 3,000 characters; the chart has them all
    return "```\n" + escape("\n".join(lines)) + "\n```"


def direction_words(direction: str) -> str:
    return BETTER.get(direction, direction)


# ---------------------------------------------------------------------------------------------------------
# The decay message


def retrain_confirm(model: str, dag_id: str | None) -> dict:
    what = f"the {dag_id} DAG" if dag_id else "the model's DAG"
    return {
        "title": {"type": "plain_text", "text": f"Retrain {model}?"[:100]},
        "text": {"type": "plain_text",
                 "text": f"This starts {what} in Airflow, as /model retrain {model} does. Its run gets a thread "
                         "in this channel."[:300]},
        "confirm": {"type": "plain_text", "text": "Retrain"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }


def retrain_button(episode_id: int, model: str, dag_id: str | None) -> dict:
    return {"type": "actions", "elements": [{
        "type": "button", "action_id": RETRAIN_ACTION, "style": "primary",
        "text": {"type": "plain_text", "text": "Retrain"},
        "value": json.dumps({"episode": episode_id, "model": model}),
        "confirm": retrain_confirm(model, dag_id)}]}


def retrain_started_auto(run_id: str, dag_id: str) -> str:
    return (f":rocket: `retrain_on_decay` is on, so retraining started: run {code(run_id)} of {code(dag_id)}; "
            "it gets its own thread here.")


def retrain_failed_auto(error: str) -> str:
    return f":warning: `retrain_on_decay` is on, but retraining could not be started: {escape(error)}"


def retrain_already_running(run_id: str) -> str:
    return f":hourglass_flowing_sand: A retraining run ({code(run_id)}) is already in progress; none was started."


def retrain_unknown(at_text: str) -> str:
    return (f":grey_question: `retrain_on_decay` asked Airflow for a run {at_text} and the worker stopped before the "
            "answer; a run that started shows up in this channel.")


def decay_message(ep: "QualityEpisode", *, reference_detail: str, rows: list["DayRow"], owners: tuple[str, ...],
                  dag_id: str | None, retrain: str | None, button: bool) -> tuple[str, list[dict]]:
    worse = abs(ep.value - ep.reference)
    head = (f":chart_with_downwards_trend: *{escape(ep.model)}* has decayed: {code(ep.variant)}'s {escape(ep.metric)} "
            f"over the last {(ep.window_end - ep.window_start).days + 1} days is *{number(ep.value)}* on "
            f"{ep.labels:,} labels, worse than its reference *{number(ep.reference)}* by {number(worse)} "
            f"(tolerance {number(ep.tolerance)}; {direction_words(ep.direction)}).")
    ref = f"Reference: {escape(reference_detail)}."
    table = day_table(rows, ep.metric)
    blocks = [_section(head), _context(ref)]
    if table:
        blocks.append(_section(f"Daily {escape(ep.metric)} of {code(ep.variant)} (by the prediction's day):\n{table}"))
    blocks.append(_context(":bar_chart: The chart of every variant over time is in this message's thread."))
    if retrain:
        blocks.append(_section(retrain))
    if button:
        who = ", ".join(mention(u) for u in owners) or "the model's owners"
        blocks.append(_context(f"{who}: the button starts `/model retrain {escape(ep.model)}`."))
        blocks.append(retrain_button(ep.id, ep.model, dag_id))
    text = f"{head}\n{ref}" + (f"\n{retrain}" if retrain else "")
    return text, blocks


def recovered_message(ep: "QualityEpisode", *, value: float, labels: int) -> tuple[str, list[dict]]:
    text = (f":white_check_mark: *{escape(ep.model)}* has recovered: {code(ep.variant)}'s {escape(ep.metric)} over the "
            f"last {(ep.window_end - ep.window_start).days + 1} days is *{number(value)}* on {labels:,} labels, "
            f"back within {number(ep.tolerance / 2)} of its reference {number(ep.reference)} "
            f"(decayed since {ep.opened_at:%Y-%m-%d}).")
    return text, [_section(text)]


def retired_message(ep: "QualityEpisode") -> tuple[str, list[dict]]:
    text = (f":information_source: {code(ep.variant)} of *{escape(ep.model)}* no longer serves (nothing captured from "
            "it in the last window), so its decay is closed.")
    return text, [_section(text)]


def retrain_reply(user_id: str, run_id: str, dag_id: str) -> str:
    return f":rocket: {mention(user_id)} started retraining from this message: run {code(run_id)} of {code(dag_id)}."


# ---------------------------------------------------------------------------------------------------------
# Button answers


def retrain_started_answer(run_id: str, dag_id: str, where: str) -> str:
    return f":rocket: Retraining started: run {code(run_id)} of {code(dag_id)}. Follow it in {where}."


def already_retrained_answer(ep: "QualityEpisode") -> str:
    by = mention(ep.retrain_by) if ep.retrain_by and ep.retrain_by[:1] in "UW" else "`retrain_on_decay`"
    return (f":information_source: Retraining for this decay was already started by {by}: run "
            f"{code(ep.retrain_run_id or '?')}. Nothing else was started; `/model retrain {escape(ep.model)}` "
            "starts another.")


def episode_gone_answer() -> str:
    return ":warning: That decay message is no longer known to modelbot; nothing was started."


# ---------------------------------------------------------------------------------------------------------
# /model quality


def _window_line(variant: str, w: dict, metric: str, open_since: date | None) -> str:
    if w.get("value") is None:
        state = w.get("undefined") or "no labels yet"
        body = f"{code(variant)}: no {escape(metric)} over {w['start']} to {w['end']} ({escape(state)})"
    else:
        body = (f"{code(variant)}: {escape(metric)} *{number(w['value'])}* on {int(w['labels']):,} labels, "
                f"{w['start']} to {w['end']}")
    if w.get("reference") is not None:
        body += f" · reference {number(w['reference'])} ({escape(w.get('reference_detail') or '')})"
    elif w.get("reference_missing"):
        body += f" · no reference yet: {escape(w['reference_missing'])}"
    state = w.get("state")
    if open_since is not None:
        body = f":red_circle: {body} · *decayed* since {open_since:%Y-%m-%d}"
    elif state == "few labels":
        body += " · too few labels to judge"
    elif state == "ok":
        body = f":large_green_circle: {body}"
    return body


def problem_lines(report: "Report") -> list[str]:
    lines = []
    for kind, (count, example) in report.problems.items():
        if count <= 0:
            continue
        words = formats.KINDS.get(kind, kind)
        line = f"• {count:,} {escape(words)}"
        if example:
            line += f" — e.g. {escape(example[:200])}"
        lines.append(line)
    return lines


def missing_lines(report: "Report") -> list[str]:
    lines = [f"• {escape(n)}" for n in report.notes]
    if report.error:
        lines.append(f"• the last pass failed: {escape(report.error[:300])}")
    if report.never_measured:
        lines.append("• not measured yet: the worker (`python -m jobs`) measures it on its next pass")
    elif report.labels_read == 0:
        lines.append(f"• no labels read yet under {code(report.labels_uri)} (Model Monitor's ground-truth format, "
                     "in yyyy/mm/dd/hh/ folders)")
    elif report.labelled_total == 0:
        lines.append("• labels were read but none joins a captured prediction yet")
    if report.backlog:
        lines.append("• still reading a backlog: the last pass stopped at its time budget and goes on next pass")
    return lines + problem_lines(report)


def render_report(report: "Report") -> tuple[str, list[dict]]:
    head = (f"*{escape(report.model)}* · realized {escape(report.metric)} ({direction_words(report.direction)}), "
            f"last {report.days} days · window {report.window_days} days, tolerance {number(report.tolerance)}, "
            f"at least {report.min_labels:,} labels")
    blocks = [_section(head)]
    lines = [_window_line(v, w, report.metric, report.open_since.get(v)) for v, w in sorted(report.windows.items())]
    if lines:
        blocks.append(_section("\n".join(lines)))
    table = day_table(report.rows, report.metric, variants=True, limit=0)
    if table:
        blocks.append(_section(f"Per day and variant (by the prediction's day):\n{table}"))
    missing = missing_lines(report)
    if missing:
        blocks.append(_section("*What is missing or could not be used*\n" + "\n".join(missing)))
    when = ago(report.finished_at) if report.finished_at else "never"
    where = f"captured predictions: {code(report.capture)}" if report.capture else "no capture destination"
    blocks.append(_context(f"Measured {when} · {where} ({escape(report.capture_source or 'none')}) · labels: "
                           f"{code(report.labels_uri)}"))
    text = "\n".join([head, *lines, *missing])
    return text, blocks


def decayed_words(variant: str, metric: str, value: float | None, reference: float | None) -> str:
    """For the status board's line of a model with a decay open."""
    return (f"quality decayed: {code(variant)} {escape(metric)} {number(value)} vs reference {number(reference)}")
