"""Status chart for `/model status <model>`: the endpoint's traffic split and error rates over the last 24 h."""

from __future__ import annotations

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.ticker import StrMethodFormatter

from charts.style import (
    OKABE_ITO,
    TALL,
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

COLUMNS = ["at", "variant", "weight", "invocations", "errors_5xx", "errors_4xx"]
WINDOW = pd.Timedelta(hours=24)
BUCKETS = [pd.Timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 120)]
MAX_BUCKETS = 48


def status(
    series: pd.DataFrame,
    model: str,
    endpoint: str,
    stable: str | None = None,
) -> RenderedChart:
    """Invocations per variant (the real traffic split) and 5XX / 4XX error rates, last 24 h of the data.

    series, one row per variant per CloudWatch period:
      at           datetime  period start (naive means UTC)
      variant      str       production variant name
      weight       float     the variant's configured weight then (SageMaker's relative weight, any scale)
      invocations  int       requests in the period
      errors_5xx   int       Invocation5XXErrors in the period
      errors_4xx   int       Invocation4XXErrors in the period
    The 24 h window ends at the latest `at`, so the function needs no clock. `stable`, when given, keeps the
    production variant blue as in the rollout chart.
    """
    title = f"{model}: {endpoint}, last 24 h"
    filename = f"status-{slug(model)}.png"
    if is_empty(series):
        return no_data(title, f"No CloudWatch data for {endpoint} in the last 24 h.", filename, TALL)
    require_columns(series, COLUMNS, "status chart")
    frame = pd.DataFrame(
        {
            "at": utc_times(series["at"]),
            "variant": series["variant"].astype(str),
            "weight": numbers(series["weight"]),
            "invocations": numbers(series["invocations"]),
            "errors_5xx": numbers(series["errors_5xx"]),
            "errors_4xx": numbers(series["errors_4xx"]),
        }
    ).dropna(subset=["at"])
    if frame.empty:
        return no_data(title, "The data has no row with a time.", filename, TALL)
    end = frame["at"].max()
    frame = frame[frame["at"] > end - WINDOW].sort_values("at", kind="stable")

    frame, period = _bucketed(frame)

    variants = sorted(frame["variant"].unique(), key=lambda v: (v != stable, v))
    colours = dict(zip(variants, (OKABE_ITO * 2)[: len(variants)]))
    share = _weight_share(frame)
    totals = frame.groupby("variant")[["invocations", "errors_5xx", "errors_4xx"]].sum(min_count=1)
    split = " / ".join(f"{v} {share.get(v, float('nan')):.0f}%" for v in variants if np.isfinite(share.get(v, np.nan)))
    title = f"{model}: {endpoint}, last 24 h" + (f", weights {split}" if split else "")

    fig = new_figure(TALL)
    calls_ax, rate_ax = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1])
    calls_ax.set_title(title, loc="left")
    wide = frame.pivot_table(index="at", columns="variant", values="invocations", aggfunc="sum").reindex(
        columns=variants)
    x = wide.index.to_numpy()
    calls = wide.fillna(0).to_numpy().T
    if len(x) == 1:
        # A single period has no width for an area: draw it as stacked bars.
        width = period if period is not None else pd.Timedelta(minutes=5)
        bottom = 0.0
        for v, c in zip(variants, calls):
            calls_ax.bar(x, c, bottom=bottom, width=width, align="edge", color=colours[v],
                         label=_legend(v, share, totals))
            bottom += c
    else:
        calls_ax.stackplot(x, calls, colors=[colours[v] for v in variants], alpha=0.85,
                           labels=[_legend(v, share, totals) for v in variants], step="post")
    per = f"per {_period_words(period)}" if period is not None else "per period"
    calls_ax.set_ylabel(f"invocations {per}")
    calls_ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    # Headroom so the legend never covers the busiest period.
    calls_ax.set_ylim(0, max(float(calls.sum(axis=0).max()) * 1.35, 1.0))
    calls_ax.legend(loc="upper left", ncols=min(len(variants), 2), fontsize=8)

    top = 0.0
    for v in variants:
        rows = frame[frame["variant"] == v]
        served = rows["invocations"].where(rows["invocations"] > 0)
        at = rows["at"].to_numpy()
        marker = "o" if len(rows) <= 30 else None
        r5 = (rows["errors_5xx"] / served * 100).to_numpy()
        r4 = (rows["errors_4xx"] / served * 100).to_numpy()
        rate_ax.plot(at, r5, color=colours[v], marker=marker, markersize=3, label=f"{v} 5XX")
        rate_ax.plot(at, r4, color=colours[v], linestyle=":", marker=marker, markersize=3, label=f"{v} 4XX")
        both = np.concatenate([r5, r4])
        both = both[np.isfinite(both)]
        if len(both):
            top = max(top, float(both.max()))
    rate_ax.set_ylim(0, top * 1.35 if top > 0 else 1.0)
    rate_ax.set_ylabel("error rate (%)")
    rate_ax.set_xlabel("time (UTC)")
    rate_ax.legend(loc="upper left", ncols=max(1, len(variants)), fontsize=8)
    locator = mdates.AutoDateLocator()
    rate_ax.xaxis.set_major_locator(locator)
    rate_ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if len(x) == 1:
        rate_ax.set_xlim(x[0] - np.timedelta64(1, "h"), x[0] + np.timedelta64(1, "h"))

    return render(fig, title, _alt_text(model, endpoint, frame, variants, share, totals, split), filename)


def _weight_share(frame: pd.DataFrame) -> dict[str, float]:
    """Each variant's percent of the configured weight at the latest period that reports weights."""
    weighted = frame.dropna(subset=["weight"])
    if weighted.empty:
        return {}
    latest = weighted[weighted["at"] == weighted["at"].max()].groupby("variant")["weight"].last()
    total = latest.sum()
    if total <= 0:
        return {v: 0.0 for v in latest.index}
    return (latest / total * 100).to_dict()


def _bucketed(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Timedelta | None]:
    """Periods summed into buckets of at least 30 min over a day: per-5-minute error rates of a few hundred
    requests are mostly noise, and 48 buckets read better (and draw smaller) than 288."""
    period = _period(frame["at"])
    if period is None:
        return frame, None
    span = frame["at"].max() - frame["at"].min()
    bucket = next((b for b in BUCKETS if b >= period and span / b <= MAX_BUCKETS), None)
    if bucket is None or bucket == period:
        return frame, period
    grouped = frame.assign(at=frame["at"].dt.floor(bucket)).groupby(["at", "variant"])
    summed = grouped[["invocations", "errors_5xx", "errors_4xx"]].sum(min_count=1)
    summed["weight"] = grouped["weight"].last()
    summed = summed.reset_index()
    return summed, bucket


def _period(at: pd.Series) -> pd.Timedelta | None:
    steps = pd.Series(np.sort(at.unique())).diff().dropna()
    steps = steps[steps > pd.Timedelta(0)]
    return steps.median() if len(steps) else None


def _period_words(period: pd.Timedelta) -> str:
    minutes = period.total_seconds() / 60
    if minutes >= 60 and minutes % 60 == 0:
        return "hour" if minutes == 60 else f"{minutes / 60:.0f} h"
    return f"{minutes:.0f} min" if minutes >= 1 else f"{period.total_seconds():.0f} s"


def _legend(v: str, share: dict, totals: pd.DataFrame) -> str:
    weight = f"weight {share[v]:.0f}%, " if v in share and np.isfinite(share[v]) else ""
    calls = totals.loc[v, "invocations"] if v in totals.index else float("nan")
    return f"{v} ({weight}{fmt_int(calls) if np.isfinite(calls) else 'no'} calls)"


def _rate(errors: float, calls: float) -> float:
    return errors / calls if np.isfinite(errors) and np.isfinite(calls) and calls > 0 else float("nan")


def _alt_text(model, endpoint, frame, variants, share, totals, split) -> str:
    start, end = frame["at"].min(), frame["at"].max()
    all_calls = totals["invocations"].sum()
    parts = [f"{model} endpoint {endpoint}, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC:"
             f" {fmt_int(all_calls) if np.isfinite(all_calls) else 'no'} invocations"
             + (f"; configured weights {split}" if split else "") + "."]
    for v in variants:
        calls, e5, e4 = (totals.loc[v, c] for c in ("invocations", "errors_5xx", "errors_4xx"))
        served = f"{calls / all_calls:.0%} of invocations, " if np.isfinite(calls) and all_calls > 0 else ""
        text = (f"{v}: {served}{fmt_int(calls) if np.isfinite(calls) else 'no'} invocations, "
                f"5XX {fmt_pct(_rate(e5, calls))}, 4XX {fmt_pct(_rate(e4, calls))}")
        rows = frame[(frame["variant"] == v) & (frame["invocations"] > 0)]
        if len(rows) > 1:
            worst = rows.assign(r=rows["errors_5xx"] / rows["invocations"]).sort_values("r").iloc[-1]
            if worst["r"] > 0:
                text += f", worst 5XX {fmt_pct(worst['r'])} at {worst['at']:%H:%M}"
        parts.append(text + ".")
    return " ".join(parts)
