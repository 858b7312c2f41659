"""Cost chart: a model's instances per variant over a period (a step line per variant, from the instance history)
and what they cost, added up day by day, at today's on-demand prices."""

from __future__ import annotations

import numpy as np
import pandas as pd

from charts.style import (
    GREY,
    OKABE_ITO,
    TALL,
    RenderedChart,
    is_empty,
    new_figure,
    no_data,
    numbers,
    render,
    require_columns,
    slug,
    utc_times,
)

COLUMNS = ["variant", "instance_type", "count", "start", "end", "usd_per_hour"]
STYLES = ["-", "--", "-.", ":"]


def _money(usd: float) -> str:
    return f"${usd:,.0f}" if usd >= 100 else f"${usd:,.2f}"


def cost(segments: pd.DataFrame, *, model: str, days: int, until: pd.Timestamp) -> RenderedChart:
    """Instances per variant over the `days` before `until`, and the running cost.

    segments, one row per stretch of time a variant ran the same instances (the instance history):
      variant        str
      instance_type  str       may be missing (serverless)
      count          int       instances
      start, end     datetime  UTC (naive means UTC); the stretch, clipped to the period by the caller
      usd_per_hour   float     one instance's on-demand price; NaN when unknown (then left out of the cost)
    """
    title = f"{model}: instances and cost, last {days} days"
    filename = f"cost-{slug(model)}.png"
    if is_empty(segments):
        return no_data(title, "No instances recorded yet: the worker records them as it reads the endpoint.",
                       filename, TALL)
    require_columns(segments, COLUMNS, "cost chart")
    frame = pd.DataFrame({
        "variant": segments["variant"].astype(str),
        "instance_type": segments["instance_type"].fillna("").astype(str),
        "count": numbers(segments["count"]).fillna(0),
        "start": utc_times(segments["start"]),
        "end": utc_times(segments["end"]),
        "price": numbers(segments["usd_per_hour"]),
    }).dropna(subset=["start", "end"]).sort_values("start")
    until = utc_times(pd.Series([until])).iloc[0]
    since = until - pd.Timedelta(days=days)
    frame["hours"] = ((frame["end"].clip(upper=until) - frame["start"].clip(lower=since)).dt.total_seconds()
                      / 3600).clip(lower=0)
    frame["instance_hours"] = frame["hours"] * frame["count"]
    frame["usd"] = frame["instance_hours"] * frame["price"]

    fig = new_figure(TALL)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    fig.suptitle(title, x=0.01, ha="left")
    variants = list(dict.fromkeys(frame["variant"]))
    summary = []
    for k, name in enumerate(variants):
        rows = frame[frame["variant"] == name]
        xs, ys = [], []
        for _, r in rows.iterrows():
            xs += [max(r["start"], since), min(r["end"], until)]
            ys += [r["count"], r["count"]]
        colour = OKABE_ITO[k % len(OKABE_ITO)]
        types = ", ".join(t for t in dict.fromkeys(rows["instance_type"]) if t) or "type unknown"
        top.plot(xs, ys, color=colour, linestyle=STYLES[k % len(STYLES)], label=f"{name} ({types})")
        known = rows["usd"].dropna()
        summary.append((name, types, float(rows["instance_hours"].sum()),
                        float(known.sum()) if len(known) == len(rows) else None))
    top.set_ylabel("instances")
    top.set_ylim(bottom=0, top=max(1.0, float(frame["count"].max())) * 1.25)
    top.yaxis.get_major_locator().set_params(integer=True)
    top.legend(loc="upper left", fontsize=8.5, ncols=2)

    # Cost per day, stacked by variant (a stretch spanning days is split by its hours in each day).
    days_index = pd.date_range(since.normalize(), until.normalize(), freq="D")
    per_day = pd.DataFrame(0.0, index=days_index, columns=variants)
    for _, r in frame.iterrows():
        if not np.isfinite(r["price"]):
            continue
        start, end = max(r["start"], since), min(r["end"], until)
        day = start.normalize()
        while day < end:
            nxt = day + pd.Timedelta(days=1)
            hours = (min(end, nxt) - max(start, day)).total_seconds() / 3600
            if hours > 0 and day in per_day.index:
                per_day.loc[day, r["variant"]] += hours * r["count"] * r["price"]
            day = nxt
    base = np.zeros(len(per_day))
    for k, name in enumerate(variants):
        bottom.bar(per_day.index + pd.Timedelta(hours=12), per_day[name].to_numpy(), width=0.8, bottom=base,
                   color=OKABE_ITO[k % len(OKABE_ITO)], label=name)
        base += per_day[name].to_numpy()
    bottom.set_ylabel("$ per day")
    bottom.set_xlim(since, until.normalize() + pd.Timedelta(days=1))  # today's bar whole, though the day is not
    if frame["price"].isna().any():
        bottom.text(0.99, 0.95, "instances without a price are left out", transform=bottom.transAxes,
                    ha="right", va="top", fontsize=8.5, color=GREY)
    fig.autofmt_xdate()
    return render(fig, title, _alt_text(model, days, summary), filename)


def _alt_text(model: str, days: int, summary: list[tuple[str, str, float, float | None]]) -> str:
    parts = []
    for name, types, hours, usd in summary:
        parts.append(f"{name} on {types}: {hours:,.0f} instance hours, "
                     + (_money(usd) if usd is not None else "cost unknown (no price for its type)"))
    known = [u for *_, u in summary if u is not None]
    total = f" Total {_money(sum(known))} at today's on-demand prices." if known else ""
    return f"Instances of {model}'s variants over the last {days} days and their cost per day. " + "; ".join(parts) \
        + "." + total
