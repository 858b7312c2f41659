"""Diagnostic plots from the evaluate task's y_true / y_pred, the kind chosen from the data itself.

Binary labels with scores in [0, 1] are a classifier: ROC with AUC, confusion matrix at 0.5, calibration.
Anything else is a regressor: predicted vs actual, and the residual histogram.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.patches import Patch

from charts.style import (
    BLUE,
    CANDIDATE,
    GREY,
    STABLE,
    WIDE,
    RenderedChart,
    fmt_int,
    fmt_num,
    is_empty,
    new_figure,
    no_data,
    numbers,
    render,
    require_columns,
    slug,
)

COLUMNS = ["y_true", "y_pred"]
THRESHOLD = 0.5
CALIBRATION_BINS = 10
# Scatter cost grows with the points drawn; beyond this a fixed-seed sample shows the same shape.
# Every number in the title and alt text still uses all rows.
MAX_SCATTER_POINTS = 4000

_BLUES = LinearSegmentedColormap.from_list("white_blue", ["#FFFFFF", BLUE])


def is_classification(y_true: np.ndarray, y_pred: np.ndarray) -> bool:
    """Binary 0/1 labels and scores within [0, 1]. A regressor whose targets happen to be 0/1 with
    predictions in [0, 1] is, for these plots, a classifier, which is what its diagnostics should be."""
    return bool(len(y_true)) and bool(np.isin(y_true, (0.0, 1.0)).all()) and bool(
        ((y_pred >= 0) & (y_pred <= 1)).all())


def diagnostics(frame: pd.DataFrame, model: str, version: str | None = None) -> RenderedChart:
    """One figure of diagnostic panels for a model version.

    frame columns (one row per evaluation example; the CSV at the evaluate task's diagnostics_uri):
      y_true  float  the label (0/1 for a classifier) or the target
      y_pred  float  the score (probability of class 1) or the prediction
    Rows where either is missing or not a number are left out, and the alt text says how many.
    """
    who = f"{model} {version}" if version else model
    filename = f"diagnostics-{slug(model)}{'-' + slug(version) if version else ''}.png"
    title = f"{who}: diagnostics"
    if is_empty(frame):
        return no_data(title, "The evaluation data has no rows.", filename, WIDE)
    require_columns(frame, COLUMNS, "diagnostics chart")
    y_true_all, y_pred_all = numbers(frame["y_true"]).to_numpy(), numbers(frame["y_pred"]).to_numpy()
    ok = np.isfinite(y_true_all) & np.isfinite(y_pred_all)
    y_true, y_pred = y_true_all[ok], y_pred_all[ok]
    dropped = int((~ok).sum())
    if not len(y_true):
        return no_data(title, f"None of the {fmt_int(len(frame))} rows has both y_true and y_pred.", filename, WIDE)
    dropped_text = f" {fmt_int(dropped)} row(s) without both values left out." if dropped else ""
    if is_classification(y_true, y_pred):
        return _classification(y_true.astype(int), y_pred, who, filename, dropped_text)
    return _regression(y_true, y_pred, who, filename, dropped_text)


# ---- classification -------------------------------------------------------------------------------------------

def roc_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct score, tied scores taken together (as sklearn does)."""
    order = np.argsort(-score, kind="mergesort")
    score, y = score[order], y_true[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    tps = np.cumsum(y)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    positives, negatives = y.sum(), len(y) - y.sum()
    tpr = np.r_[0.0, tps / positives] if positives else np.full(len(tps) + 1, np.nan)
    fpr = np.r_[0.0, fps / negatives] if negatives else np.full(len(fps) + 1, np.nan)
    return fpr, tpr


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    if y_true.min() == y_true.max():
        return float("nan")
    fpr, tpr = roc_curve(y_true, score)
    return float(np.trapezoid(tpr, fpr))


def confusion(y_true: np.ndarray, score: np.ndarray, threshold: float = THRESHOLD) -> dict[str, int]:
    predicted = score >= threshold
    actual = y_true == 1
    return {
        "tp": int((predicted & actual).sum()),
        "fp": int((predicted & ~actual).sum()),
        "fn": int((~predicted & actual).sum()),
        "tn": int((~predicted & ~actual).sum()),
    }


def calibration(y_true: np.ndarray, score: np.ndarray, bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Mean score, observed positive rate and count per equal-width score bin (empty bins omitted)."""
    index = np.minimum((score * bins).astype(int), bins - 1)
    table = pd.DataFrame({"bin": index, "score": score, "y": y_true}).groupby("bin").agg(
        mean_score=("score", "mean"), positive_rate=("y", "mean"), count=("y", "size"))
    return table.reset_index()


def _classification(y_true, score, who, filename, dropped_text) -> RenderedChart:
    n = len(y_true)
    positives = int(y_true.sum())
    auc = roc_auc(y_true, score)
    cm = confusion(y_true, score)
    cal = calibration(y_true, score)
    brier = float(np.mean((score - y_true) ** 2))
    accuracy = (cm["tp"] + cm["tn"]) / n
    title = f"{who}: classifier diagnostics, ROC AUC {fmt_num(auc)} on {fmt_int(n)} rows"

    fig = new_figure(WIDE)
    fig.suptitle(title)
    roc_ax, cm_ax, cal_ax = fig.subplots(1, 3)

    roc_ax.set_title(f"ROC, AUC {fmt_num(auc)}")
    roc_ax.plot([0, 1], [0, 1], color=GREY, linestyle=":", linewidth=1.2, label="chance (AUC 0.5)")
    if np.isfinite(auc):
        fpr, tpr = roc_curve(y_true, score)
        roc_ax.plot(fpr, tpr, color=STABLE, label=f"model (AUC {auc:.3f})")
        roc_ax.legend(loc="lower right")
    else:
        only = "positive" if positives else "negative"
        roc_ax.text(0.5, 0.55, f"Only {only} labels:\nROC needs both classes", ha="center", va="center",
                    transform=roc_ax.transAxes, color=GREY, bbox={"facecolor": "white", "edgecolor": "none"})
    roc_ax.set_xlim(0, 1)
    roc_ax.set_ylim(0, 1.01)
    roc_ax.set_aspect("equal", adjustable="box")
    roc_ax.set_xlabel("false positive rate")
    roc_ax.set_ylabel("true positive rate")

    matrix = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    cm_ax.set_title(f"Confusion at {THRESHOLD}, accuracy {accuracy:.1%}")
    cm_ax.imshow(matrix, cmap=_BLUES, vmin=0, vmax=max(int(matrix.max()), 1))
    names = [["TN", "FP"], ["FN", "TP"]]
    for i in range(2):
        for j in range(2):
            dark = matrix[i, j] > 0.6 * max(int(matrix.max()), 1)
            cm_ax.text(j, i, f"{names[i][j]}\n{matrix[i, j]:,}\n{matrix[i, j] / n:.1%}", ha="center",
                       va="center", fontsize=11, color="white" if dark else "black")
    cm_ax.set_xticks([0, 1], ["predicted 0", "predicted 1"])
    cm_ax.set_yticks([0, 1], ["actual 0", "actual 1"])
    cm_ax.grid(False)
    for spine in cm_ax.spines.values():
        spine.set_visible(False)

    cal_ax.set_title(f"Calibration, Brier {brier:.3f}")
    cal_ax.plot([0, 1], [0, 1], color=GREY, linestyle=":", linewidth=1.2, label="perfectly calibrated")
    cal_ax.plot(cal["mean_score"], cal["positive_rate"], color=CANDIDATE, marker="o", label="model")
    # Rows per bin as bars scaled into the bottom quarter: how much each point of the curve is worth.
    tallest = int(cal["count"].max())
    cal_ax.bar((cal["bin"] + 0.5) / CALIBRATION_BINS, cal["count"] / tallest * 0.25,
               width=0.9 / CALIBRATION_BINS, color=GREY, alpha=0.25, zorder=0)
    cal_ax.set_xlim(0, 1)
    cal_ax.set_ylim(0, 1.01)
    cal_ax.set_aspect("equal", adjustable="box")
    cal_ax.set_xlabel("mean predicted probability")
    cal_ax.set_ylabel("observed fraction positive")
    handles, labels = cal_ax.get_legend_handles_labels()
    handles.append(Patch(facecolor=GREY, alpha=0.25))
    labels.append(f"rows per bin (tallest {tallest:,})")
    cal_ax.legend(handles, labels, loc="upper left")

    worst = cal.assign(gap=(cal["positive_rate"] - cal["mean_score"]).abs()).sort_values("gap").iloc[-1]
    alt = (
        f"{who} classifier diagnostics on {fmt_int(n)} rows ({fmt_int(positives)} positive, "
        f"{positives / n:.1%}): ROC AUC {fmt_num(auc)}"
        f"{'' if np.isfinite(auc) else ' (undefined: only one class present)'}. "
        f"At threshold {THRESHOLD}: {cm['tp']:,} TP, {cm['fp']:,} FP, {cm['fn']:,} FN, {cm['tn']:,} TN, "
        f"accuracy {accuracy:.1%}. Calibration: Brier score {brier:.3f}; largest gap in score bin "
        f"{worst['bin'] / CALIBRATION_BINS:.1f}-{(worst['bin'] + 1) / CALIBRATION_BINS:.1f}, mean score "
        f"{worst['mean_score']:.2f} vs observed {worst['positive_rate']:.2f} ({int(worst['count']):,} rows)."
        f"{dropped_text}"
    )
    return render(fig, title, alt, filename)


# ---- regression -----------------------------------------------------------------------------------------------

def _regression(y_true, y_pred, who, filename, dropped_text) -> RenderedChart:
    n = len(y_true)
    residual = y_pred - y_true
    rmse = float(np.sqrt(np.mean(residual**2)))
    mae = float(np.mean(np.abs(residual)))
    bias = float(np.mean(residual))
    variance = float(np.sum((y_true - y_true.mean()) ** 2))
    r2 = 1 - float(np.sum(residual**2)) / variance if variance > 0 else float("nan")
    title = f"{who}: regression diagnostics, RMSE {rmse:.4g}, R² {fmt_num(r2)} on {fmt_int(n)} rows"

    fig = new_figure(WIDE)
    fig.suptitle(title)
    scatter_ax, hist_ax = fig.subplots(1, 2)

    shown = np.arange(n)
    if n > MAX_SCATTER_POINTS:
        shown = np.sort(np.random.default_rng(0).choice(n, MAX_SCATTER_POINTS, replace=False))
    sampled = f" (a sample of {len(shown):,} of {n:,} rows)" if len(shown) < n else ""
    scatter_ax.set_title(f"Predicted vs actual{sampled}")
    scatter_ax.scatter(y_true[shown], y_pred[shown], s=9, color=STABLE, alpha=0.45, linewidth=0,
                       label="rows")
    low = float(min(y_true.min(), y_pred.min()))
    high = float(max(y_true.max(), y_pred.max()))
    if low == high:  # all values equal: give the identity line some length
        low, high = low - 1, high + 1
    scatter_ax.plot([low, high], [low, high], color=GREY, linestyle=":", linewidth=1.2, label="perfect (y = x)")
    scatter_ax.set_xlabel("actual (y_true)")
    scatter_ax.set_ylabel("predicted (y_pred)")
    scatter_ax.legend(loc="upper left")

    hist_ax.set_title(f"Residuals, MAE {mae:.4g}, bias {bias:+.3g}")
    bins = min(50, max(5, int(np.sqrt(n))))
    spread = float(residual.max() - residual.min())
    value_range = None if spread > 0 else (float(residual[0]) - 0.5, float(residual[0]) + 0.5)
    # One filled outline instead of a rectangle per bin: a fraction of the drawing time, the same picture.
    hist_ax.hist(residual, bins=bins, range=value_range, color=CANDIDATE, histtype="stepfilled")
    hist_ax.axvline(0, color="black", linewidth=1.2, label="no error")
    hist_ax.axvline(bias, color=STABLE, linestyle="--", linewidth=1.4, label=f"mean residual {bias:+.3g}")
    hist_ax.set_xlabel("residual (y_pred − y_true)")
    hist_ax.set_ylabel("rows")
    hist_ax.legend(loc="upper right")

    q05, q50, q95 = np.quantile(residual, [0.05, 0.5, 0.95])
    alt = (
        f"{who} regression diagnostics on {fmt_int(n)} rows: RMSE {rmse:.4g}, MAE {mae:.4g}, R² {fmt_num(r2)}, "
        f"mean residual (bias) {bias:+.3g}. Residuals (predicted minus actual): median {q50:+.3g}, 90% between "
        f"{q05:+.3g} and {q95:+.3g}. Actual values range {y_true.min():.4g} to {y_true.max():.4g}, predictions "
        f"{y_pred.min():.4g} to {y_pred.max():.4g}.{dropped_text}"
    )
    return render(fig, title, alt, filename)

