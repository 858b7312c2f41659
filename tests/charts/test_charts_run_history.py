import pandas as pd
import pytest

from charts.examples import T0, run_frame
from charts.run_history import run_history
from charts.style import SIZE


def runs(rows):
    return pd.DataFrame(rows, columns=["run_id", "task_id", "start", "end", "state"])


def test_last_runs_with_failures_marked(valid_png):
    chart = run_history(run_frame(10), "churn", "churn_lifecycle", now=T0 + pd.Timedelta(minutes=40))
    valid_png(chart.png, SIZE)
    assert chart.title == "churn: last 10 runs of churn_lifecycle, 2 failed"
    assert "7 succeeded, 2 failed, 1 still running" in chart.alt_text
    assert "failed at train" in chart.alt_text and "failed at evaluate" in chart.alt_text
    assert "Slowest task: train" in chart.alt_text


def test_only_the_last_runs_are_drawn():
    frame = runs([(f"r{i}", "train", pd.Timestamp("2025-06-01") + pd.Timedelta(days=i),
                   pd.Timestamp("2025-06-01") + pd.Timedelta(days=i, minutes=10 + i), "success") for i in range(15)])
    chart = run_history(frame, "churn", "dag", max_runs=10)
    assert "last 10 runs of dag, 10 succeeded, 0 failed" in chart.alt_text
    assert "Latest run r14 succeeded after 24 min" in chart.alt_text


@pytest.mark.parametrize(
    "frame, expect",
    [
        (pd.DataFrame(), "no data yet"),
        (runs([]), "no data yet"),
        (runs([("r1", "train", None, None, "queued")]), "no task has started yet"),
        (runs([("r1", "train", "2025-06-01T10:00Z", "2025-06-01T10:30Z", "failed")]),
         "last 1 runs of dag, 0 succeeded, 1 failed"),
        (runs([(f"r{i}", t, f"2025-06-0{i}T10:00", f"2025-06-0{i}T10:05", "success")
               for i in range(1, 4) for t in ("a", "b")]), "Median run time 5 min"),
        (runs([("r1", "a", "2025-06-01T10:00", "2025-06-01T10:05", "success"),
               ("r1", "b", None, None, None), ("r2", "a", "2025-06-02T10:00", None, "running"),
               ("r3", None, "not a time", "2025-06-03T10:00", "success")]), "1 still running"),
    ],
    ids=["no columns", "empty", "nothing started", "one point", "all equal", "nans"],
)
def test_edge_cases_render_a_readable_png(valid_png, frame, expect):
    chart = run_history(frame, "churn", "dag")
    valid_png(chart.png, SIZE)
    assert expect in chart.alt_text


def test_many_tasks_share_an_other_colour(valid_png):
    frame = runs([("r1", f"task_{i:02d}", pd.Timestamp("2025-06-01") + pd.Timedelta(minutes=i),
                   pd.Timestamp("2025-06-01") + pd.Timedelta(minutes=i + 1), "success") for i in range(20)])
    valid_png(run_history(frame, "churn", "dag").png, SIZE)


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="state"):
        run_history(runs([("r1", "a", None, None, "x")]).drop(columns="state"), "m", "d")
