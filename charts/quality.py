"""Quality chart: a model's realized metric per day and variant, each variant's reference and decay threshold,
promotions and rollbacks marked, and the labels each day counted (the talk's picture of a model decaying week
after week)."""

from __future__ import annotations

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from charts.style import (
    GREEN,
    GREY,
    OKABE_ITO,
    TALL,
    VERMILLION,
    RenderedChart,
    fmt_int,
    is_empty,
    new_figure,
    no_data,
    numbers,
    render,
    require_columns,
    slug,
)

DAY_COLUMNS = ["day", "variant", "value", "labels"]
REFERENCE_COLUMNS = ["variant", "value", "source"]
EVENT_COLUMNS = ["at", "kind", "variant"]
WINDOW_COLUMNS = ["variant", "value", "labels"]
MARKERS = ["o", "s", "^", "D", "v", "P"]
SOURCES = {"offline": "offline evaluation", "takeover": "first window after taking all traffic",
           "first": "first labelled window"}
SHORT_SOURCES = {"offline": "offline", "takeover": "after takeover", "first": "first window"}
# Reference and event colours stay clear of the variant colours they annotate.
VARIANT_COLOURS = [c for c in OKABE_ITO if c not in (GREEN, VERMILLION)]


def _num(x: float, metric_scale: float) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:,.1f}" if metric_scale >= 100 else f"{x:.3f}"


def quality(
    days: pd.DataFrame,
    references: pd.DataFrame | None,
    events: pd.DataFrame | None,
    *,
    model: str,
    metric: str,
    direction: str,
    tolerance: float,
    window_days: int,
    windows: pd.DataFrame | None = None,
) -> RenderedChart:
    """The metric per day and variant, with each variant's reference as a dashed line and its decay threshold
    (reference worse by `tolerance`) dotted; promotions and rollbacks as vertical lines; labels per day below.

    days, one row per variant and day (the prediction's day):
      day      date     UTC day
      variant  str
      value    float    the day's metric; NaN when undefined or unlabelled
      labels   int      labelled predictions the value counts
    references (optional): variant, value, source (offline | takeover | first)
    events (optional): at (datetime), kind ("promoted" | "rolled back"), variant
    windows (optional): variant, value, labels: the metric over the last `window_days` days, all their pairs
      pooled (what decay is judged on; not the mean of the daily values), drawn as a bar across those days
    """
    title = f"{model}: {metric} per day"
    filename = f"quality-{slug(model)}.png"
    if is_empty(days):
        return no_data(title, "No labelled predictions yet: captured predictions and labels are joined as they "
                              "arrive.", filename, TALL)
    require_columns(days, DAY_COLUMNS, "quality chart")
    frame = pd.DataFrame({
        "day": pd.to_datetime(days["day"], errors="coerce"),
        "variant": days["variant"].astype(str),
        "value": numbers(days["value"]),
        "labels": numbers(days["labels"]).fillna(0),
    }).dropna(subset=["day"]).sort_values(["day", "variant"])
    refs = _references(references)
    marks = _events(events)
    pooled = _windows(windows)
    variants = list(dict.fromkeys(frame["variant"]))
    colours = {v: VARIANT_COLOURS[i % len(VARIANT_COLOURS)] for i, v in enumerate(variants)}
    scale = float(np.nanmax(np.abs(frame["value"]))) if frame["value"].notna().any() else 1.0
    lower_is_better = direction == "minimize"

    fig = new_figure(TALL)
    grid = fig.add_gridspec(2, 1, height_ratios=[3, 1])
    ax = fig.add_subplot(grid[0])
    bars = fig.add_subplot(grid[1], sharex=ax)
    ax.set_title(f"{title} ({'lower' if lower_is_better else 'higher'} is better)", loc="left")
    first_day, last_day = frame["day"].min(), frame["day"].max()
    span = (first_day - pd.Timedelta(hours=12), last_day + pd.Timedelta(hours=12))
    handles = []
    for i, variant in enumerate(variants):
        rows = frame[frame["variant"] == variant].set_index("day")
        full = rows.reindex(pd.date_range(rows.index.min(), rows.index.max(), freq="D"))  # gaps stay gaps
        colour, marker = colours[variant], MARKERS[i % len(MARKERS)]
        (line,) = ax.plot(full.index, full["value"], color=colour, marker=marker, markersize=4, label=variant)
        handles.append(line)
        if variant in pooled and np.isfinite(pooled[variant][0]):
            start = last_day - pd.Timedelta(days=window_days - 1)
            ax.hlines(pooled[variant][0], start - pd.Timedelta(hours=12), last_day + pd.Timedelta(hours=12),
                      colors=colour, linewidth=5, alpha=0.35)
            handles.append(Line2D([], [], color=colour, linewidth=5, alpha=0.35,
                                  label=f"{variant} last {window_days} days {_num(pooled[variant][0], scale)}"))
        ref = refs.get(variant)
        if ref is not None:
            value, source = ref
            ax.hlines(value, *span, colors=colour, linestyles="--", linewidth=1.3)
            threshold = value + tolerance if lower_is_better else value - tolerance
            ax.hlines(threshold, *span, colors=colour, linestyles=":", linewidth=1.1, alpha=0.8)
            handles.append(Line2D([], [], color=colour, linestyle="--",
                                  label=f"{variant} reference {_num(value, scale)} "
                                        f"({SHORT_SOURCES.get(source, source)})"))
            handles.append(Line2D([], [], color=colour, linestyle=":",
                                  label=f"{variant} decays {'above' if lower_is_better else 'below'} "
                                        f"{_num(threshold, scale)}"))
    bottom = np.zeros(len(frame["day"].unique()))
    all_days = np.sort(frame["day"].unique())
    for variant in variants:
        counts = (frame[frame["variant"] == variant].groupby("day")["labels"].sum()
                  .reindex(all_days, fill_value=0).to_numpy())
        bars.bar(all_days, counts, bottom=bottom, width=0.8, color=colours[variant], alpha=0.6)
        bottom = bottom + counts
    for at, kind, variant in marks:
        if not (span[0] <= at <= span[1]):
            continue
        colour, style = (GREEN, "-") if kind == "promoted" else (VERMILLION, "--")
        for axis in (ax, bars):
            axis.axvline(at, color=colour, linestyle=style, linewidth=1.4)
        ax.annotate(f"{variant} {kind}", (at, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -3),
                    textcoords="offset points", va="top", fontsize=8.5, color=colour, rotation=90)
    if any(kind == "promoted" for _, kind, _ in marks):
        handles.append(Line2D([], [], color=GREEN, label="promotion"))
    if any(kind == "rolled back" for _, kind, _ in marks):
        handles.append(Line2D([], [], color=VERMILLION, linestyle="--", label="rollback"))
    ax.set_ylabel(metric)
    ax.set_xlim(*span)
    ax.tick_params(labelbottom=False)
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    bars.xaxis.set_major_locator(locator)
    bars.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    bars.set_ylabel("labels", color=GREY)
    bars.set_xlabel(f"prediction day (UTC) · decay is judged on the last {window_days} days")
    alt = _alt_text(frame, refs, marks, pooled, model=model, metric=metric, direction=direction, tolerance=tolerance,
                    window_days=window_days, scale=scale)
    return render(fig, title, alt, filename)


def _references(references: pd.DataFrame | None) -> dict[str, tuple[float, str]]:
    if is_empty(references):
        return {}
    require_columns(references, REFERENCE_COLUMNS, "quality chart references")
    found = {}
    for variant, value, source in references[REFERENCE_COLUMNS].itertuples(index=False):
        value = float(value) if value is not None else float("nan")
        if np.isfinite(value):
            found[str(variant)] = (value, str(source))
    return found


def _events(events: pd.DataFrame | None) -> list[tuple[pd.Timestamp, str, str]]:
    if is_empty(events):
        return []
    require_columns(events, EVENT_COLUMNS, "quality chart events")
    at = pd.to_datetime(events["at"], utc=True, errors="coerce").dt.tz_convert(None)
    return sorted((t, str(k), str(v)) for t, k, v in zip(at, events["kind"], events["variant"]) if not pd.isna(t))


def _windows(windows: pd.DataFrame | None) -> dict[str, tuple[float, float]]:
    if is_empty(windows):
        return {}
    require_columns(windows, WINDOW_COLUMNS, "quality chart windows")
    return {str(v): (float(value) if value is not None else float("nan"), float(labels or 0))
            for v, value, labels in windows[WINDOW_COLUMNS].itertuples(index=False)}


def _alt_text(frame: pd.DataFrame, refs: dict, marks: list, pooled: dict, *, model: str, metric: str, direction: str,
              tolerance: float, window_days: int, scale: float) -> str:
    first, last = frame["day"].min(), frame["day"].max()
    parts = [f"{model}: {metric} per day ({'lower' if direction == 'minimize' else 'higher'} is better), "
             f"{first:%Y-%m-%d} to {last:%Y-%m-%d}."]
    for variant in dict.fromkeys(frame["variant"]):
        rows = frame[(frame["variant"] == variant) & frame["value"].notna()]
        if rows.empty:
            parts.append(f"{variant}: no day with a value.")
            continue
        head, tail = rows.iloc[0], rows.iloc[-1]
        text = f"{variant}: {_num(head['value'], scale)} on {head['day']:%m-%d}, {_num(tail['value'], scale)} on {tail['day']:%m-%d}"
        if variant in pooled and np.isfinite(pooled[variant][0]):
            value, labels = pooled[variant]
            text += f"; last {window_days} days {_num(value, scale)} on {fmt_int(labels)} labels."
        else:
            recent = rows[rows["day"] > tail["day"] - pd.Timedelta(days=window_days)]
            text += (f"; mean of the last {window_days} daily values {_num(float(recent['value'].mean()), scale)} "
                     f"on {fmt_int(recent['labels'].sum())} labels.")
        if variant in refs:
            value, source = refs[variant]
            threshold = value + tolerance if direction == "minimize" else value - tolerance
            text += (f" Reference {_num(value, scale)} ({SOURCES.get(source, source)}); decay past "
                     f"{_num(threshold, scale)}.")
        parts.append(text)
    for at, kind, variant in marks[-4:]:
        parts.append(f"{variant} {kind} {at:%Y-%m-%d}.")
    return " ".join(parts)
