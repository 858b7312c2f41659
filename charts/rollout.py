"""Rollout evidence: each variant's error rate, the judgement's bounds and evidence, the traffic, and the events.

The chart covers the rollout's own span, from its start event to its last event or judgement, whatever data
exists before it; the time axis says which hours, minutes (and, for a short rollout, seconds) it shows.
"""

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

# Where an evidence ratio past any scale (infinite) is drawn: far above the decision line at 1.
EVIDENCE_CAP = 1e6
EVIDENCE_COLUMNS = ["at", "variant", "requests", "errors", "rate", "lower", "upper", "weight"]
# Optional evidence columns, from the judgement (bot/rollouts/chart_data.py): the candidate's anytime-valid upper
# bound and the stable rate plus the margin (a step shifts once the first is below the second), and both
# e-values as fractions of the way to their decision (1: decided).
JUDGEMENT_COLUMNS = ["bound", "shift_line", "evidence", "shift_evidence"]
EVENT_COLUMNS = ["at", "kind", "label"]  # optional "weight": the candidate's share after the event, percent
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
    """Error rate of each variant over the rollout, the judgement's bounds, the traffic, and what happened when.

    evidence, one row per variant per judgement (tick):
      at        datetime  when the controller judged (naive means UTC)
      variant   str       production variant name (the stable or the candidate)
      requests  int       requests behind the rate at this judgement (e.g. since the step began)
      errors    int       of which errors (5XX)
      rate      float     error rate as a fraction, errors / requests (computed when missing)
      lower     float     lower edge of the rate's confidence band, fraction
      upper     float     upper edge, fraction
      weight    float     share of traffic the variant received, percent 0-100
      (optional) bound, shift_line, evidence, shift_evidence: see JUDGEMENT_COLUMNS
    events, one row per controller transition:
      at     datetime
      kind   one of start, shift, pause, resume, rollback, promote
      label  str   short words shown beside the marker, e.g. "25%" or "5XX up"
      (optional) weight  float  the candidate's traffic share after the event, percent
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

    frame = pd.DataFrame({"at": utc_times(evidence["at"]), "variant": evidence["variant"].astype(str)})
    for column in EVIDENCE_COLUMNS[2:] + JUDGEMENT_COLUMNS:
        frame[column] = numbers(evidence[column]) if column in evidence else np.nan
    frame = frame.dropna(subset=["at"])
    if frame.empty:
        return no_data(title, "The evidence has no row with a time.", filename, TALL)
    computed = frame["errors"] / frame["requests"].where(frame["requests"] > 0)
    frame["rate"] = frame["rate"].fillna(computed)
    frame = frame.sort_values("at", kind="stable")

    # The rollout's own span: from its start event (when there is one) to its last event or judgement.
    starts = events.loc[events["kind"] == "start", "at"]
    t0 = starts.iloc[0] if len(starts) else min(frame["at"].min(), events["at"].min() if len(events) else pd.NaT)
    frame = frame[frame["at"] >= t0]
    events = events[events["at"] >= t0].reset_index(drop=True)
    if frame.empty:
        return no_data(title, "No requests have been judged since the rollout started.", filename, TALL)
    t1 = max(frame["at"].max(), events["at"].max() if len(events) else frame["at"].max())

    variants = _variant_order(frame["variant"].unique(), stable, candidate)
    colours = _colours(variants, stable, candidate)
    latest = {v: frame[frame["variant"] == v].iloc[-1] for v in variants}
    traffic = _traffic(events, t1)
    if traffic is not None:
        cand_weight = float(traffic["weight"].iloc[-1])
    else:
        cand_weight = latest[candidate]["weight"] if candidate in latest else float("nan")
    state = f"{events.iloc[-1]['kind']}" if len(events) else ""
    headline = (f"candidate at {cand_weight:.0f}% traffic" if np.isfinite(cand_weight) else "candidate traffic unknown")
    title = f"{title}: {headline}" + (f", last event {state}" if state else "")

    judged = frame[JUDGEMENT_COLUMNS[2:]].notna().any(axis=None)
    has_bound = bool(np.isfinite(frame["bound"]).any())
    fig = new_figure(TALL)
    if judged:
        rate_ax, evidence_ax, weight_ax = fig.subplots(3, 1, sharex=True, height_ratios=[3, 1.6, 1])
    else:
        (rate_ax, weight_ax), evidence_ax = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1]), None
    rate_ax.set_title(title, loc="left")
    handles, labels = [], []
    top = 0.0
    for v in variants:
        rows = frame[frame["variant"] == v]
        at = rows["at"].to_numpy()
        role = "stable" if v == stable else "candidate" if v == candidate else "other variant"
        # Markers while points are few enough to tell apart (a judgement with counts among many without counts,
        # say: a line needs two points, and one alone would not show).
        marker = ("s" if v == stable else "o") if rows["rate"].notna().sum() <= MARKER_LIMIT else None
        line, = rate_ax.plot(at, rows["rate"] * 100, color=colours[v], marker=marker, markersize=4)
        bound = rows["bound"].to_numpy() * 100
        if has_bound:
            # The judgement's bound replaces the descriptive bands: it is what the shift compares.
            handles.append(line)
            labels.append(f"{v} ({role})")
            if np.isfinite(bound).any():
                rate_ax.plot(at, bound, color=colours[v], linestyle="--", linewidth=1.4, marker=marker,
                             markersize=3)
                rate_ax.plot(at, rows["shift_line"] * 100, color=GREY, linestyle=":", linewidth=1.4)
                handles += [Line2D([], [], color=colours[v], linestyle="--"),
                            Line2D([], [], color=GREY, linestyle=":")]
                labels += [f"{v} upper bound", "stable + margin"]
            band = np.column_stack([bound, bound])
        else:
            band = rows[["lower", "upper"]].to_numpy() * 100
            if len(rows) == 1 and np.isfinite(band).all():
                # One judgement has no area to fill: show its band as an error bar instead.
                r = float(rows["rate"].iloc[0]) * 100
                rate_ax.errorbar(at, [r], yerr=[[r - band[0, 0]], [band[0, 1] - r]], color=colours[v], capsize=5)
            else:
                rate_ax.fill_between(at, band[:, 0], band[:, 1], color=colours[v], alpha=0.2, linewidth=0)
            handles.append((Patch(facecolor=colours[v], alpha=0.2), line))
            labels.append(f"{v} ({role}): error rate and band")
        if traffic is None:
            weight_ax.step(at, rows["weight"], where="post", color=colours[v], marker=marker, markersize=3)
        # The bound starts wide (nothing is known at first): it may run off the top rather than flatten the rates.
        finite = np.concatenate([rows["rate"].to_numpy() * 100, rows["shift_line"].to_numpy() * 100 * 1.5]
                                + ([] if has_bound else [band[:, 1]]))
        finite = finite[np.isfinite(finite)]
        if len(finite):
            top = max(top, float(finite.max()))
    if traffic is not None:
        for v, share in ((stable, 100 - traffic["weight"]), (candidate, traffic["weight"])):
            weight_ax.step(traffic["at"], share, where="post", color=colours.get(v, GREY), linewidth=1.6)
    # Headroom above the data for the event labels written down from the top edge.
    rate_ax.set_ylim(0, top * 1.3 if top > 0 else 1.0)
    rate_ax.set_ylabel("5XX rate (%)")
    if evidence_ax is not None:
        _evidence_panel(evidence_ax, frame, candidate, handles, labels)
    weight_ax.set_ylim(0, 105)
    weight_ax.set_yticks([0, 50, 100])
    weight_ax.set_ylabel("traffic (%)")

    if t0 == t1:
        t0, t1 = t0 - pd.Timedelta(minutes=1), t1 + pd.Timedelta(minutes=1)
    kinds_seen = []
    axes = [ax for ax in (rate_ax, evidence_ax, weight_ax) if ax is not None]
    for group in _coincident(events, tolerance=(t1 - t0) * 0.015):
        for _, event in group.iterrows():
            colour, style, width = EVENT_STYLE.get(event["kind"], (GREY, "--", 1.0))
            for ax in axes:
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
    _time_axis(weight_ax, t0, t1)

    for kind in kinds_seen:
        colour, style, width = EVENT_STYLE.get(kind, (GREY, "--", 1.0))
        handles.append(Line2D([], [], color=colour, linestyle=style, linewidth=width))
        labels.append(kind)
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 4), fontsize=7.5,
               frameon=False)

    return render(fig, title, _alt_text(model, stable, candidate, t0, t1, latest, events, headline), filename)


def _evidence_panel(ax, frame: pd.DataFrame, candidate: str, handles: list, labels: list) -> None:
    """Both e-values as fractions of the way to their decision, on a log scale: each decides when it reaches 1."""
    rows = frame[frame["variant"] == candidate]
    at = rows["at"].to_numpy()
    values = []
    for column, colour, style, label in (("evidence", VERMILLION, "-", "worse: rolls back at 1"),
                                         ("shift_evidence", GREEN, "-", "within margin: shifts at 1")):
        y = rows[column].to_numpy(dtype=float)
        # An overwhelming e-value is infinite (it overflowed): drawn at the top, off the scale, never at inf, which a
        # log axis cannot place.
        shown = np.clip(np.where(np.isposinf(y), EVIDENCE_CAP, y), 1e-6, EVIDENCE_CAP)
        if np.isfinite(shown).any():
            line, = ax.plot(at, shown, color=colour, linestyle=style, linewidth=1.6)
            handles.append(line)
            labels.append(label)
            values.append(shown[np.isfinite(shown)])
    ax.axhline(1.0, color=BLACK, linewidth=0.9)
    ax.set_yscale("log")
    every = np.concatenate(values) if values else np.array([1.0])
    ax.set_ylim(max(min(every.min(), 0.01) / 2, 1e-6), max(every.max(), 1.0) * 3)
    ax.set_ylabel("evidence\n÷ needed")


def _traffic(events: pd.DataFrame, t1) -> pd.DataFrame | None:
    """The candidate's share over the rollout from the events that set it (start, shifts, bake, rollback),
    held to the chart's end; None when the events do not carry it."""
    if "weight" not in events or events["weight"].isna().all():
        return None
    steps = events.dropna(subset=["weight"])[["at", "weight"]]
    return pd.concat([steps, pd.DataFrame({"at": [t1], "weight": [steps["weight"].iloc[-1]]})], ignore_index=True)


def _time_axis(ax, t0, t1) -> None:
    """Hours and minutes on every tick (and seconds for a short rollout), the date and span in the label: a
    one-minute rollout must not read as an hour."""
    span = t1 - t0
    locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    pattern = "%H:%M:%S" if span <= pd.Timedelta(minutes=15) else "%H:%M" if span <= pd.Timedelta(days=2) \
        else "%m-%d %H:%M"
    ax.xaxis.set_major_formatter(mdates.DateFormatter(pattern))
    ax.set_xlabel(f"time (UTC): {_span_text(t0, t1)}")


def _span_text(t0, t1) -> str:
    until = f"{t1:%H:%M:%S}" if t1.date() == t0.date() else f"{t1:%Y-%m-%d %H:%M:%S}"
    return f"{t0:%Y-%m-%d %H:%M:%S} to {until}, {_duration(t1 - t0)}"


def _duration(d: pd.Timedelta) -> str:
    seconds = int(round(d.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} days {hours % 24} h"


def _events(events: pd.DataFrame | None) -> pd.DataFrame:
    if is_empty(events):
        return pd.DataFrame({"at": pd.Series([], dtype="datetime64[ns]"), "kind": [], "label": [], "weight": []})
    require_columns(events, EVENT_COLUMNS, "rollout chart events")
    frame = pd.DataFrame(
        {
            "at": utc_times(events["at"]),
            "kind": events["kind"].astype(str).str.lower(),
            "label": events["label"].fillna("").astype(str),
            "weight": numbers(events["weight"]) if "weight" in events else np.nan,
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


def _alt_text(model, stable, candidate, t0, t1, latest, events, headline) -> str:
    parts = [f"{model} rollout from {stable} to {candidate}, {_span_text(t0, t1)} (UTC): {headline}."]
    rates = []
    for v, row in latest.items():
        if np.isfinite(row["bound"]):
            band = f" (at most {fmt_pct(row['bound'])} by the judgement)"
        elif np.isfinite(row["lower"]) and np.isfinite(row["upper"]):
            band = f" (band {fmt_pct(row['lower'])} to {fmt_pct(row['upper'])})"
        else:
            band = ""
        requests = fmt_int(row["requests"]) if np.isfinite(row["requests"]) else "unknown"
        errors = fmt_int(row["errors"]) if np.isfinite(row["errors"]) else "unknown"
        rates.append(f"{v} {fmt_pct(row['rate'])}{band}, {errors} errors in {requests} requests")
    parts.append("Latest error rates: " + "; ".join(rates) + ".")
    judged = latest.get(candidate)
    if judged is not None and not (np.isnan(judged["evidence"]) and np.isnan(judged["shift_evidence"])):
        def way(x, decision):
            if np.isposinf(x):
                return f"overwhelming evidence (beyond counting) to {decision}"
            return f"{x:.2g}x the evidence needed to {decision}" if np.isfinite(x) else f"no evidence to {decision}"
        parts.append(f"Judgement: {way(judged['evidence'], 'roll back')}; "
                     f"{way(judged['shift_evidence'], 'shift')}.")
    if len(events):
        shown = events.tail(MAX_EVENTS_IN_TEXT)
        earlier = f"{len(events) - len(shown)} earlier, then " if len(events) > len(shown) else ""
        parts.append("Events: " + earlier + "; ".join(_event_text(e) for _, e in shown.iterrows()) + ".")
    return " ".join(parts)
