"""Evaluation chart: this run's candidate against production on the model's metric, over past evaluations."""

from __future__ import annotations

import matplotlib.dates as mdates
import numpy as np
import pandas as pd

from charts.style import (
    CANDIDATE,
    GREY,
    STABLE,
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

COLUMNS = ["run_id", "at", "candidate", "production", "promoted"]
MAX_RUNS = 30

_HIGHER = {"maximize", "max", "higher", "higher_is_better", "up"}
_LOWER = {"minimize", "min", "lower", "lower_is_better", "down"}


def higher_is_better(direction: str) -> bool:
    d = str(direction).strip().lower()
    if d in _HIGHER:
        return True
    if d in _LOWER:
        return False
    raise ValueError(f"direction must be 'maximize' or 'minimize', not {direction!r}")


def fmt_metric(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.4g}"


def evaluation(
    history: pd.DataFrame,
    model: str,
    metric: str,
    direction: str,
    version: str | None = None,
) -> RenderedChart:
    """Candidate vs production for `metric`, this run highlighted against the model's past evaluations.

    history, one row per evaluate task (the run being reported is the latest `at`):
      run_id      str       the Airflow run
      at          datetime  when it was evaluated (naive means UTC)
      candidate   float     the candidate's metric
      production  float     production's metric on the same data; NaN when nothing is in production yet
      promoted    bool      whether that candidate was (or, for this run, is recommended to be) promoted
    direction: "maximize" or "minimize" as in the registry ("higher"/"lower" are accepted too).
    At most the last 30 evaluations are drawn. Rows without a time or without any value are left out.
    """
    up = higher_is_better(direction)
    who = f"{model} {version}" if version else model
    filename = f"evaluation-{slug(model)}{'-' + slug(version) if version else ''}.png"
    title = f"{who}: {metric} of candidate vs production"
    if is_empty(history):
        return no_data(title, f"No evaluations of {model} recorded yet.", filename)
    require_columns(history, COLUMNS, "evaluation chart")

    frame = pd.DataFrame(
        {
            "run_id": history["run_id"].astype(str),
            "at": utc_times(history["at"]),
            "candidate": numbers(history["candidate"]),
            "production": numbers(history["production"]),
            "promoted": history["promoted"].fillna(False).astype(bool),
        }
    )
    frame = frame.dropna(subset=["at"])
    frame = frame[frame["candidate"].notna() | frame["production"].notna()]
    if frame.empty:
        return no_data(title, f"{len(history)} evaluation(s) of {model}, none with a time and a value.", filename)
    frame = frame.sort_values("at", kind="stable").tail(MAX_RUNS)

    current = frame.iloc[-1]
    cand, prod = float(current["candidate"]), float(current["production"])
    comparison = _comparison(cand, prod, up)
    title = f"{who}: {metric} candidate {fmt_metric(cand)} vs production {fmt_metric(prod)}"

    fig = new_figure()
    ax = fig.add_subplot()
    ax.set_title(title, loc="left")
    at = frame["at"].to_numpy()
    # Legend entries only for what is drawn: an entry without a mark would be a question, not an answer.
    if frame["production"].notna().any():
        ax.plot(at, frame["production"], color=STABLE, marker="s", markersize=5, label="production")
    promoted = frame["promoted"].to_numpy()
    has_value = frame["candidate"].notna().to_numpy()
    if (promoted & has_value).any():
        ax.scatter(at[promoted], frame["candidate"][promoted], s=42, color=CANDIDATE, edgecolor="black",
                   linewidth=0.6, zorder=3, label="candidate, promoted")
    if (~promoted & has_value).any():
        ax.scatter(at[~promoted], frame["candidate"][~promoted], s=42, facecolor="white", edgecolor=CANDIDATE,
                   linewidth=1.6, zorder=3, label="candidate, not promoted")
    if np.isfinite(cand):
        ax.scatter([current["at"]], [cand], s=220, facecolor="none", edgecolor="black", linewidth=1.4, zorder=4,
                   label="this run")
    ax.annotate(
        f"this run: {fmt_metric(cand)} vs {fmt_metric(prod)}\n{comparison}",
        xy=(1, 0.02 if up else 0.98), xycoords="axes fraction", ha="right", va="bottom" if up else "top",
        fontsize=10, bbox={"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": GREY},
    )
    arrow = "↑ higher is better" if up else "↓ lower is better"
    ax.set_ylabel(f"{metric}  ({arrow})")
    ax.set_xlabel("evaluated at (UTC)")
    first, last = frame["at"].iloc[0], frame["at"].iloc[-1]
    if last - first < pd.Timedelta(days=1):
        # Left alone, matplotlib spreads a single day over years of empty axis; a few days either side reads.
        ax.set_xlim(first - pd.Timedelta(days=3), last + pd.Timedelta(days=3))
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.legend(loc="upper left" if up else "lower left", ncols=2)

    alt = _alt_text(who, metric, up, frame, cand, prod, comparison, bool(current["promoted"]))
    return render(fig, title, alt, filename)


def _comparison(cand: float, prod: float, up: bool) -> str:
    if not np.isfinite(prod):
        return "no production value to compare with"
    if not np.isfinite(cand):
        return "no candidate value"
    delta = cand - prod
    if delta == 0:
        return "±0, no change"
    better = (delta > 0) == up
    return f"{delta:+.3g}, {'better' if better else 'worse'}"


def _alt_text(who, metric, up, frame, cand, prod, comparison, promote) -> str:
    direction = "higher is better" if up else "lower is better"
    parts = [
        f"{who} evaluation on {metric} ({direction}): candidate {fmt_metric(cand)} vs production "
        f"{fmt_metric(prod)} ({comparison}); promotion {'recommended' if promote else 'not recommended'}."
    ]
    past = frame.iloc[:-1]
    if len(past):
        prod_past = past["production"].dropna()
        span = (f" production ranged {fmt_metric(prod_past.min())} to {fmt_metric(prod_past.max())};"
                if len(prod_past) else "")
        parts.append(
            f"History: {len(past)} earlier evaluation(s) since {past['at'].iloc[0]:%Y-%m-%d};{span} "
            f"{int(past['promoted'].sum())} of {len(past)} candidates promoted."
        )
    else:
        parts.append("First evaluation of this model.")
    return " ".join(parts)
