import numpy as np
import pandas as pd
import pytest

from charts.evaluation import evaluation
from charts.examples import evaluation_history
from charts.style import SIZE


def history(rows):
    return pd.DataFrame(rows, columns=["run_id", "at", "candidate", "production", "promoted"])


def test_candidate_vs_production_with_history(valid_png):
    frame = evaluation_history(12)
    chart = evaluation(frame, "churn", "auc", "maximize", "v42")
    valid_png(chart.png, SIZE)
    last = frame.iloc[-1]
    assert chart.title.startswith("churn v42")
    assert f"candidate {last['candidate']:.4g}" in chart.alt_text
    assert f"production {last['production']:.4g}" in chart.alt_text
    assert "higher is better" in chart.alt_text and "better)" in chart.alt_text
    assert "11 earlier evaluation(s)" in chart.alt_text
    assert "promotion recommended" in chart.alt_text


def test_lower_is_better_reads_a_drop_as_better(valid_png):
    frame = history([
        ("r1", "2025-05-01T10:00Z", 12.5, 12.0, False),
        ("r2", "2025-05-08T10:00Z", 11.2, 12.0, True),
    ])
    chart = evaluation(frame, "demand", "rmse", "minimize", "v7")
    valid_png(chart.png, SIZE)
    assert "lower is better" in chart.alt_text
    assert "candidate 11.2 vs production 12 (-0.8, better)" in chart.alt_text


def test_worse_candidate_is_called_worse():
    frame = history([("r1", pd.Timestamp("2025-05-01"), 0.80, 0.85, False)])
    assert "(-0.05, worse)" in evaluation(frame, "churn", "auc", "maximize").alt_text


@pytest.mark.parametrize(
    "frame, expect",
    [
        (pd.DataFrame(), "no data yet"),
        (history([]), "no data yet"),
        (history([("r1", "2025-05-01", 0.9, 0.88, True)]), "First evaluation"),
        (history([(f"r{i}", f"2025-05-0{i}", 0.9, 0.9, False) for i in range(1, 6)]), "±0, no change"),
        (history([("r1", "2025-05-01", 0.9, np.nan, True)]), "no production value"),
        (history([("r1", "2025-05-01", 0.9, 0.8, True), ("r2", "2025-05-02", np.nan, 0.8, False),
                  ("r3", None, 0.7, 0.8, False)]), "candidate n/a vs production 0.8"),
        (history([("r1", "2025-05-01", np.nan, np.nan, False)]), "no data yet"),
    ],
    ids=["no columns", "empty", "one point", "all equal", "no production yet", "nans", "all nan"],
)
def test_edge_cases_render_a_readable_png(valid_png, frame, expect):
    chart = evaluation(frame, "churn", "auc", "maximize", "v1")
    valid_png(chart.png, SIZE)
    assert expect in chart.alt_text
    assert "churn" in chart.title


def test_missing_column_is_named():
    frame = history([("r1", "2025-05-01", 0.9, 0.8, True)]).drop(columns=["production"])
    with pytest.raises(ValueError, match="production"):
        evaluation(frame, "churn", "auc", "maximize")


def test_unknown_direction_is_refused():
    with pytest.raises(ValueError, match="maximize"):
        evaluation(history([]), "churn", "auc", "sideways")
