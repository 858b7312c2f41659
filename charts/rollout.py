"""Rollout evidence: each variant's error rate with its confidence band, the traffic steps, and the events."""

from __future__ import annotations

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from charts.style import (
    BLACK,
    CANDIDATE,
    GREEN,
    GREY,
    OKABE_ITO,
    PURPLE,
    STABLE,
    TALL,
    VERMILLION,
    RenderedChart,
    fmt_int,
    fmt_pct,
    is_empty,
    new_figure,
    no_data,
    numbers,
    render,
    require_columns,
    slug,
    utc_times,
)

EVIDENCE_COLUMNS = ["at", "variant", "requests", "errors", "rate", "lower", "upper", "weight"]
EVENT_COLUMNS = ["at", "kind", "label"]
# Colour, line style and width per event: the label written beside each line says the same in words.
EVENT_STYLE = {
    "start": (BLACK, ":", 1.0),
    "shift": (GREY, "--", 1.0),
    "resume": (GREY, "-.", 1.0),
    "pause": (PURPLE, "-", 2.0),
    "rollback": (VERMILLION, "-", 2.6),
    "promote": (GREEN, "-", 2.6),
}
MAX_EVENTS_IN_TEXT = 8
MARKER_LIMIT = 40  # beyond this many points per variant, markers only clutter the line


def rollout(
    evidence: pd.DataFrame,
    events: pd.DataFrame | None,
    model: str,
    stable: str,
    candidate: str,
) -> RenderedChart:
    """Error rate of each variant over the rollout, its band, the traffic steps, and what happened when.

    evidence, one row per variant per judgement (tick):
      at        datetime  when the controller judged (naive means UTC)
      variant   str       production variant name (the stable or the candidate)
      requests  int       requests behind the rate at this judgement (e.g. since the step began)
      errors    int       of which errors (5XX)
      rate      float     error rate as a fraction, errors / requests (computed when missing)
      lower     float     lower edge of the rate's confidence band, fraction
      upper     float     upper edge, fraction
      weight    float     share of traffic the variant received, percent 0-100
    events, one row per controller transition:
      at     datetime
      kind   one of start, shift, pause, resume, rollback, promote
      label  str   short words shown beside the marker, e.g. "25%" or "5XX up"
    """
    title = f"{model} rollout {stable} → {candidate}"
    filename = f"rollout-{slug(model)}-{slug(candidate)}.png"
    events = _events(events)
    if is_empty(evidence):
        message = "No requests have been judged yet."
        if len(events):
            message += f" Last event: {_event_text(events.iloc[-1])}."
        return no_data(title, message, filename, TALL)
    require_columns(evidence, EVIDENCE_COLUMNS, "rollout chart")

    frame = pd.DataFrame(
        {
            "at": utc_times(evidence["at"]),
            "variant": evidence["variant"].astype(str),
            "requests": numbers(evidence["requests"]),
            "errors": numbers(evidence["errors"]),
            "rate": numbers(evidence["rate"]),
            "lower": numbers(evidence["lower"]),
            "upper": numbers(evidence["upper"]),
            "weight": numbers(evidence["weight"]),
        }
    ).dropna(subset=["at"])
    if frame.empty:
        return no_data(title, "The evidence has no row with a time.", filename, TALL)
    computed = frame["errors"] / frame["requests"].where(frame["requests"] > 0)
    frame["rate"] = frame["rate"].fillna(computed)
    frame = frame.sort_values("at", kind="stable")

    variants = _variant_order(frame["variant"].unique(), stable, candidate)
    colours = _colours(variants, stable, candidate)
    latest = {v: frame[frame["variant"] == v].iloc[-1] for v in variants}
    cand_weight = latest[candidate]["weight"] if candidate in latest else float("nan")
    state = f"{events.iloc[-1]['kind']}" if len(events) else ""
    headline = (f"candidate at {cand_weight:.0f}% traffic" if np.isfinite(cand_weight) else "candidate traffic unknown")
    title = f"{title}: {headline}" + (f", last event {state}" if state else "")

    fig = new_figure(TALL)
    rate_ax, weight_ax = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    rate_ax.set_title(title, loc="left")
    handles, labels = [], []
    top = 0.0
    for v in variants:
        rows = frame[frame["variant"] == v]
        at = rows["at"].to_numpy()
        role = "stable" if v == stable else "candidate" if v == candidate else "other variant"
        marker = ("s" if v == stable else "o") if len(rows) <= MARKER_LIMIT else None
        line, = rate_ax.plot(at, rows["rate"] * 100, color=colours[v], marker=marker, markersize=4)
        band = rows[["lower", "upper"]].to_numpy() * 100
        if len(rows) == 1 and np.isfinite(band).all():
            # One judgement has no area to fill: show its band as an error bar instead.
            r = float(rows["rate"].iloc[0]) * 100
            rate_ax.errorbar(at, [r], yerr=[[r - band[0, 0]], [band[0, 1] - r]], color=colours[v], capsize=5)
        else:
            rate_ax.fill_between(at, band[:, 0], band[:, 1], color=colours[v], alpha=0.2, linewidth=0)
        handles.append((Patch(facecolor=colours[v], alpha=0.2), line))
        labels.append(f"{v} ({role}): error rate and band")
        weight_ax.step(at, rows["weight"], where="post", color=colours[v], marker=marker, markersize=3)
        finite = np.concatenate([rows["rate"].to_numpy() * 100, band[:, 1]])
        finite = finite[np.isfinite(finite)]
        if len(finite):
            top = max(top, float(finite.max()))
    # Headroom above the data for the event labels written down from the top edge.
    rate_ax.set_ylim(0, top * 1.3 if top > 0 else 1.0)
    rate_ax.set_ylabel("error rate (%)")
    weight_ax.set_ylim(0, 105)
    weight_ax.set_yticks([0, 50, 100])
    weight_ax.set_ylabel("traffic (%)")
    weight_ax.set_xlabel("time (UTC)")

    t0, t1 = frame["at"].min(), frame["at"].max()
    if len(events):
        t0, t1 = min(t0, events["at"].min()), max(t1, events["at"].max())
    if t0 == t1:
        t0, t1 = t0 - pd.Timedelta(minutes=5), t1 + pd.Timedelta(minutes=5)
    kinds_seen = []
    for group in _coincident(events, tolerance=(t1 - t0) * 0.015):
        for _, event in group.iterrows():
            colour, style, width = EVENT_STYLE.get(event["kind"], (GREY, "--", 1.0))
            for ax in (rate_ax, weight_ax):
                ax.axvline(event["at"], color=colour, linestyle=style, linewidth=width, zorder=1)
            if event["kind"] not in kinds_seen:
                kinds_seen.append(event["kind"])
        last = group.iloc[-1]
        colour = EVENT_STYLE.get(last["kind"], (GREY,))[0]
        rate_ax.annotate(
            " · ".join(_event_label(e) for _, e in group.iterrows()), xy=(group["at"].iloc[0], 1),
            xycoords=("data", "axes fraction"), xytext=(3, -4), textcoords="offset points", rotation=90,
            ha="left", va="top", fontsize=8, color="#333333" if colour == GREY else colour,
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.75},
        )
    pad = (t1 - t0) * 0.03
    weight_ax.set_xlim(t0 - pad, t1 + pad)
    locator = mdates.AutoDateLocator()
    weight_ax.xaxis.set_major_locator(locator)
    weight_ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))

    for kind in kinds_seen:
        colour, style, width = EVENT_STYLE.get(kind, (GREY, "--", 1.0))
        handles.append(Line2D([], [], color=colour, linestyle=style, linewidth=width))
        labels.append(kind)
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8,
               frameon=False)

    return render(fig, title, _alt_text(model, stable, candidate, frame, latest, events, headline), filename)


def _events(events: pd.DataFrame | None) -> pd.DataFrame:
    if is_empty(events):
        return pd.DataFrame({"at": pd.Series([], dtype="datetime64[ns]"), "kind": [], "label": []})
    require_columns(events, EVENT_COLUMNS, "rollout chart events")
    frame = pd.DataFrame(
        {
            "at": utc_times(events["at"]),
            "kind": events["kind"].astype(str).str.lower(),
            "label": events["label"].fillna("").astype(str),
        }
    ).dropna(subset=["at"])
    return frame.sort_values("at", kind="stable").reset_index(drop=True)


def _coincident(events: pd.DataFrame, tolerance: pd.Timedelta) -> list[pd.DataFrame]:
    """Events too close to tell apart on the time axis, grouped so their labels share one line."""
    groups: list[pd.DataFrame] = []
    start = None
    for i in range(len(events)):
        at = events["at"].iloc[i]
        if start is None or at - start > tolerance:
            groups.append(events.iloc[[i]])
            start = at
        else:
            groups[-1] = events.iloc[groups[-1].index[0]: i + 1]
    return groups


def _event_label(event) -> str:
    return f"{event['kind']} {event['label']}".strip()


def _event_text(event) -> str:
    return f"{event['at']:%H:%M} {_event_label(event)}"


def _variant_order(found, stable: str, candidate: str) -> list[str]:
    ordered = [v for v in (stable, candidate) if v in set(found)]
    return ordered + sorted(v for v in found if v not in ordered)


def _colours(variants: list[str], stable: str, candidate: str) -> dict[str, str]:
    others = iter(c for c in OKABE_ITO if c not in (STABLE, CANDIDATE, BLACK))
    return {v: STABLE if v == stable else CANDIDATE if v == candidate else next(others, GREY) for v in variants}


def _alt_text(model, stable, candidate, frame, latest, events, headline) -> str:
    start, end = frame["at"].min(), frame["at"].max()
    until = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%Y-%m-%d %H:%M}"
    parts = [f"{model} rollout from {stable} to {candidate}, {start:%Y-%m-%d %H:%M} to {until} UTC: {headline}."]
    rates = []
    for v, row in latest.items():
        band = (f" (band {fmt_pct(row['lower'])} to {fmt_pct(row['upper'])})"
                if np.isfinite(row["lower"]) and np.isfinite(row["upper"]) else "")
        requests = fmt_int(row["requests"]) if np.isfinite(row["requests"]) else "unknown"
        errors = fmt_int(row["errors"]) if np.isfinite(row["errors"]) else "unknown"
        rates.append(f"{v} {fmt_pct(row['rate'])}{band}, {errors} errors in {requests} requests")
    parts.append("Latest error rates: " + "; ".join(rates) + ".")
    if len(events):
        shown = events.tail(MAX_EVENTS_IN_TEXT)
        earlier = f"{len(events) - len(shown)} earlier, then " if len(events) > len(shown) else ""
        parts.append("Events: " + earlier + "; ".join(_event_text(e) for _, e in shown.iterrows()) + ".")
    return " ".join(parts)
