"""Run history: the last runs of a model's DAG, how long each task took, and where runs failed."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from charts.style import (
    LIGHT_GREY,
    OKABE_ITO,
    VERMILLION,
    RenderedChart,
    fmt_minutes,
    fmt_time,
    is_empty,
    new_figure,
    no_data,
    render,
    require_columns,
    slug,
    utc_times,
)

COLUMNS = ["run_id", "task_id", "start", "end", "state"]
MAX_RUNS = 10
MAX_TASK_COLOURS = 7  # more tasks than this share one grey "other tasks" colour
FAILED_STATES = {"failed", "upstream_failed"}
UNFINISHED_STATES = {"running", "queued", "scheduled", "up_for_retry", "up_for_reschedule", "deferred",
                     "restarting"}


def run_history(
    runs: pd.DataFrame,
    model: str,
    dag_id: str,
    now: pd.Timestamp | None = None,
    max_runs: int = MAX_RUNS,
) -> RenderedChart:
    """Per-task durations of the last `max_runs` runs of `dag_id`, one stacked bar per run, failures marked.

    runs, one row per task instance:
      run_id   str       the DAG run
      task_id  str
      start    datetime  task start (naive means UTC); missing when it never started
      end      datetime  task end; missing while it runs
      state    str       Airflow task state: success, failed, upstream_failed, running, skipped, ...
    now: the end used for tasks still running (default: the latest time in the data), passed in so the
    function stays pure.
    """
    title = f"{model}: last runs of {dag_id}"
    filename = f"runs-{slug(model)}.png"
    if is_empty(runs):
        return no_data(title, f"No runs of {dag_id} yet.", filename)
    require_columns(runs, COLUMNS, "run history chart")

    frame = pd.DataFrame(
        {
            "run_id": runs["run_id"].astype(str),
            "task_id": runs["task_id"].astype(str),
            "start": utc_times(runs["start"]),
            "end": utc_times(runs["end"]),
            "state": runs["state"].fillna("unknown").astype(str).str.lower(),
        }
    )
    latest_seen = pd.concat([frame["start"], frame["end"]]).max()
    if pd.isna(latest_seen):
        return no_data(title, f"{frame['run_id'].nunique()} run(s) of {dag_id}, but no task has started yet.",
                       filename)
    now = utc_times(pd.Series([now])).iloc[0] if now is not None else latest_seen
    running = frame["end"].isna() & frame["start"].notna() & frame["state"].isin(UNFINISHED_STATES)
    frame["end"] = frame["end"].where(~running, now)
    frame["minutes"] = ((frame["end"] - frame["start"]).dt.total_seconds() / 60).clip(lower=0)
    frame["running"] = running
    frame["failed"] = frame["state"].isin(FAILED_STATES)

    per_run = frame.groupby("run_id").agg(first_start=("start", "min"), last_end=("end", "max"),
                                          failed=("failed", "any"), running=("running", "any"))
    per_run = per_run.dropna(subset=["first_start"]).sort_values("first_start").tail(max_runs)
    frame = frame[frame["run_id"].isin(per_run.index)]
    per_run["minutes"] = frame.groupby("run_id")["minutes"].sum(min_count=1).reindex(per_run.index)
    per_run["wall_minutes"] = (per_run["last_end"] - per_run["first_start"]).dt.total_seconds() / 60

    # Tasks in the order they usually start, so the stacks read bottom-up like the DAG.
    offset = frame["start"] - frame["run_id"].map(per_run["first_start"])
    task_order = (
        frame.assign(offset=offset).groupby("task_id")["offset"].median().sort_values(kind="stable").index.tolist()
    )
    typical = frame.groupby("task_id")["minutes"].median()
    coloured = typical.sort_values(ascending=False).index[:MAX_TASK_COLOURS].tolist()
    palette = iter(c for c in OKABE_ITO if c != VERMILLION)  # vermillion is kept for failures
    colours = {t: (next(palette) if t in coloured else LIGHT_GREY) for t in task_order}

    failed_n, running_n = int(per_run["failed"].sum()), int(per_run["running"].sum())
    title = f"{model}: last {len(per_run)} runs of {dag_id}, {failed_n} failed"
    fig = new_figure()
    ax = fig.add_subplot()
    ax.set_title(title, loc="left")
    x = np.arange(len(per_run))
    bottom = np.zeros(len(per_run))
    cells = frame.groupby(["task_id", "run_id"]).agg(minutes=("minutes", "sum"), failed=("failed", "any"),
                                                     running=("running", "any"))
    for task in task_order:
        rows = cells.loc[task].reindex(per_run.index)
        height = rows["minutes"].fillna(0).to_numpy()
        failed = rows["failed"].fillna(False).astype(bool).to_numpy()
        live = rows["running"].fillna(False).astype(bool).to_numpy()
        ax.bar(x, height, bottom=bottom, width=0.7, color=colours[task], edgecolor="white", linewidth=0.6)
        if failed.any():
            ax.bar(x[failed], height[failed], bottom=bottom[failed], width=0.7, facecolor="none",
                   edgecolor=VERMILLION, hatch="///", linewidth=1.8)
        if live.any():
            ax.bar(x[live], height[live], bottom=bottom[live], width=0.7, facecolor="none", edgecolor="black",
                   hatch="..", linewidth=1.0, linestyle="--")
        bottom += height

    for i, (run_id, run) in enumerate(per_run.iterrows()):
        if run["failed"]:
            failing = frame[(frame["run_id"] == run_id) & (frame["state"] == "failed")]["task_id"].tolist()
            word = "✗ " + (failing[0] if failing else "failed")
            ax.annotate(word, (i, bottom[i]), xytext=(0, 3), textcoords="offset points", ha="center",
                        va="bottom", color=VERMILLION, fontsize=9, weight="bold")
        elif run["running"]:
            ax.annotate("running", (i, bottom[i]), xytext=(0, 3), textcoords="offset points", ha="center",
                        va="bottom", color="black", fontsize=9)
    ax.set_ylim(0, max(float(bottom.max()) * 1.18, 1.0))
    ax.set_xticks(x, [t.strftime("%m-%d\n%H:%M") for t in per_run["first_start"]], fontsize=8.5)
    ax.set_xlabel("run start (UTC)")
    ax.set_ylabel("task duration, stacked (minutes)")
    ax.grid(axis="x", visible=False)

    legend = [Patch(facecolor=colours[t], label=t) for t in task_order if t in coloured]
    if any(t not in coloured for t in task_order):
        legend.append(Patch(facecolor=LIGHT_GREY, label="other tasks"))
    legend.append(Patch(facecolor="white", edgecolor=VERMILLION, hatch="///", label="failed"))
    if running_n:
        legend.append(Patch(facecolor="white", edgecolor="black", hatch="..", label="still running"))
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8.5, frameon=False)

    alt = _alt_text(model, dag_id, frame, per_run, typical, failed_n, running_n)
    return render(fig, title, alt, filename)


def _alt_text(model, dag_id, frame, per_run, typical, failed_n, running_n) -> str:
    total = len(per_run)
    succeeded = total - failed_n - int((per_run["running"] & ~per_run["failed"]).sum())
    parts = [f"{model}: last {total} runs of {dag_id}, {succeeded} succeeded, {failed_n} failed"
             + (f", {running_n} still running" if running_n else "") + "."]
    finished = per_run[~per_run["running"]]["wall_minutes"].dropna()
    if len(finished):
        parts.append(f"Median run time {fmt_minutes(float(finished.median()))}.")
    slowest = typical.dropna().sort_values(ascending=False)
    if len(slowest):
        parts.append(f"Slowest task: {slowest.index[0]} (median {fmt_minutes(float(slowest.iloc[0]))}).")
    for run_id, run in per_run[per_run["failed"]].tail(3).iterrows():
        failing = frame[(frame["run_id"] == run_id) & (frame["state"] == "failed")]["task_id"].tolist()
        parts.append(f"Run {run_id} ({fmt_time(run['first_start'])}) failed at {', '.join(failing) or 'a task'}.")
    last_id, last = per_run.index[-1], per_run.iloc[-1]
    status = "failed" if last["failed"] else "still running" if last["running"] else "succeeded"
    parts.append(f"Latest run {last_id} {status} after {fmt_minutes(float(last['wall_minutes']))}.")
    return " ".join(parts)
