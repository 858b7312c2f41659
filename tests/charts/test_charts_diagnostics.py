import numpy as np
import pandas as pd
import pytest

from charts.diagnostics import confusion, diagnostics, is_classification, roc_auc
from charts.examples import classification_frame, regression_frame
from charts.style import WIDE


def rank_auc(y, score):
    """AUC as the probability a random positive outscores a random negative, ties counting half."""
    pos, neg = score[y == 1], score[y == 0]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return (greater + 0.5 * ties) / (len(pos) * len(neg))


def test_classifier_gets_roc_confusion_and_calibration(valid_png):
    frame = classification_frame(5000)
    chart = diagnostics(frame, "churn", "v42")
    valid_png(chart.png, WIDE)
    y, s = frame["y_true"].to_numpy(), frame["y_pred"].to_numpy()
    cm = confusion(y, s)
    assert "classifier" in chart.title and "churn v42" in chart.title
    auc = rank_auc(y, s)
    assert f"ROC AUC {auc:.3f} on 5,000 rows" in chart.title
    assert f"on 5,000 rows ({int(y.sum()):,} positive" in chart.alt_text and f"ROC AUC {auc:.3f}." in chart.alt_text
    tp, fp = int(((s >= 0.5) & (y == 1)).sum()), int(((s >= 0.5) & (y == 0)).sum())
    assert (cm["tp"], cm["fp"]) == (tp, fp)
    assert f"{tp:,} TP, {fp:,} FP" in chart.alt_text
    assert "Brier score" in chart.alt_text


def test_auc_handles_tied_scores_like_the_rank_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    score = np.round(rng.random(400) * 0.5 + y * 0.3, 1)  # few distinct values: many ties
    assert roc_auc(y, score) == pytest.approx(rank_auc(y, score))


def test_regressor_gets_scatter_and_residuals(valid_png):
    frame = regression_frame(3000)
    chart = diagnostics(frame, "demand", "v7")
    valid_png(chart.png, WIDE)
    residual = frame["y_pred"] - frame["y_true"]
    rmse = float(np.sqrt((residual**2).mean()))
    assert "regression" in chart.title
    assert f"RMSE {rmse:.4g}" in chart.alt_text
    assert f"mean residual (bias) {residual.mean():+.3g}" in chart.alt_text


def test_kind_is_chosen_from_the_data():
    assert is_classification(np.array([0.0, 1.0, 1.0]), np.array([0.1, 0.8, 1.0]))
    assert not is_classification(np.array([0.0, 1.0, 2.0]), np.array([0.1, 0.8, 1.0]))  # three classes
    assert not is_classification(np.array([0.0, 1.0]), np.array([-0.2, 0.8]))  # not probabilities
    assert "regression" in diagnostics(pd.DataFrame({"y_true": [0, 1, 1], "y_pred": [0.2, 1.4, 0.9]}), "m").title


def test_large_frames_stay_under_the_size_limit(valid_png):
    rng = np.random.default_rng(1)
    n = 200_000
    actual = rng.normal(0, 1, n)
    chart = diagnostics(pd.DataFrame({"y_true": actual, "y_pred": actual + rng.normal(0, 2, n)}), "big")
    valid_png(chart.png, WIDE)
    assert "200,000 rows" in chart.alt_text


@pytest.mark.parametrize(
    "frame, expect",
    [
        (pd.DataFrame(), "no data yet"),
        (pd.DataFrame({"y_true": [], "y_pred": []}), "no data yet"),
        (pd.DataFrame({"y_true": [1], "y_pred": [0.7]}), "ROC AUC n/a (undefined: only one class present)"),
        (pd.DataFrame({"y_true": [3.5], "y_pred": [3.1]}), "on 1 rows: RMSE 0.4"),
        (pd.DataFrame({"y_true": [0, 0, 0, 0], "y_pred": [0.2, 0.3, 0.1, 0.6]}), "only one class present"),
        (pd.DataFrame({"y_true": [0, 1, 0, 1], "y_pred": [0.5] * 4}), "ROC AUC 0.500"),
        (pd.DataFrame({"y_true": [5.0] * 4, "y_pred": [5.0] * 4}), "RMSE 0, MAE 0, R² n/a"),
        (pd.DataFrame({"y_true": [0, 1, np.nan, 1, 0], "y_pred": [0.1, 0.9, 0.4, None, 0.3]}),
         "2 row(s) without both values left out"),
        (pd.DataFrame({"y_true": ["a", "b"], "y_pred": [np.nan, np.nan]}), "no data yet"),
    ],
    ids=["no columns", "empty", "one classified row", "one regression row", "one class", "all equal scores",
         "all equal values", "nans", "nothing numeric"],
)
def test_edge_cases_render_a_readable_png(valid_png, frame, expect):
    chart = diagnostics(frame, "churn", "v3")
    valid_png(chart.png, WIDE)
    assert expect in chart.alt_text


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="y_pred"):
        diagnostics(pd.DataFrame({"y_true": [1, 0], "score": [0.2, 0.4]}), "churn")
