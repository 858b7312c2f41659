"""The model's metric on realized predictions and labels, defined exactly as the pipeline's evaluation defines it.

The generated DAG (dags/modelbot_pipelines.py) scores candidates with its own numpy functions and cannot import
modelbot; modelbot cannot import the DAG file either (it is not installed with modelbot). So the definitions are
written twice and tests/quality/test_metrics.py proves them equal on random data, ties and edge cases included:
a realized AUC of 0.74 means what the run's offline 0.81 meant.

What differs is only what production data brings: the offline evaluation refuses a label that is not 0/1, a
probability outside [0, 1] for logloss, or a day with one class, and the pipeline fails. Here such pairs are left
out and counted, and a day whose metric is undefined says why; one bad label never hides a day's metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# metric -> which way is better; the same names and directions as the pipeline (bot/registry.PIPELINE_METRICS).
DIRECTIONS = {"auc": "maximize", "accuracy": "maximize", "f1": "maximize", "logloss": "minimize",
              "rmse": "minimize", "mae": "minimize", "r2": "maximize"}
CLASSIFICATION = ("auc", "accuracy", "f1", "logloss")
THRESHOLD = 0.5  # accuracy and f1 read a score as class 1 from here on, as the pipeline does
LOGLOSS_CLIP = 1e-15


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=float)
    # Tied scores share the mean of their ranks (the Mann-Whitney U form of the ROC area).
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def _accuracy(y: np.ndarray, s: np.ndarray) -> float:
    return float(((s >= THRESHOLD).astype(int) == y).mean())


def _f1(y: np.ndarray, s: np.ndarray) -> float:
    pred = (s >= THRESHOLD).astype(int)
    tp = float(((pred == 1) & (y == 1)).sum())
    fp = float(((pred == 1) & (y == 0)).sum())
    fn = float(((pred == 0) & (y == 1)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def _logloss(y: np.ndarray, s: np.ndarray) -> float:
    p = np.clip(s, LOGLOSS_CLIP, 1 - LOGLOSS_CLIP)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def _rmse(y: np.ndarray, s: np.ndarray) -> float:
    return float(np.sqrt(((y - s) ** 2).mean()))


def _mae(y: np.ndarray, s: np.ndarray) -> float:
    return float(np.abs(y - s).mean())


def _r2(y: np.ndarray, s: np.ndarray) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    if total == 0:
        return float("nan")
    return 1.0 - float(((y - s) ** 2).sum()) / total


FUNCTIONS = {"auc": _auc, "accuracy": _accuracy, "f1": _f1, "logloss": _logloss, "rmse": _rmse, "mae": _mae,
             "r2": _r2}


@dataclass(frozen=True)
class Score:
    """The metric over some labelled predictions: its value (None when undefined, and why), how many pairs it
    counts, and how many were left out because the metric cannot read them."""

    value: float | None
    labelled: int
    not_binary: int = 0  # classification: labels other than 0 and 1
    out_of_range: int = 0  # logloss: scores outside [0, 1]
    undefined: str | None = None


def score(metric: str, labels, scores) -> Score:
    """The metric over pairs (label, score); pairs the metric cannot read are left out and counted."""
    if metric not in FUNCTIONS:
        return Score(None, 0, undefined=f"{metric!r} is not a metric modelbot computes ({', '.join(FUNCTIONS)})")
    y = np.asarray(labels, dtype=float)
    s = np.asarray(scores, dtype=float)
    not_binary = out_of_range = 0
    if metric in CLASSIFICATION:
        binary = (y == 0.0) | (y == 1.0)
        not_binary = int((~binary).sum())
        keep = binary
        if metric == "logloss":
            in_range = (s >= 0.0) & (s <= 1.0)
            out_of_range = int((binary & ~in_range).sum())
            keep = binary & in_range
        if not keep.all():
            y, s = y[keep], s[keep]
        y = y.astype(int)
    n = len(y)
    if n == 0:
        return Score(None, 0, not_binary, out_of_range, undefined="no labelled predictions")
    value = FUNCTIONS[metric](y, s)
    if not np.isfinite(value):
        return Score(None, n, not_binary, out_of_range, undefined=_why_undefined(metric, y))
    return Score(value, n, not_binary, out_of_range)


def _why_undefined(metric: str, y: np.ndarray) -> str:
    if metric == "auc":
        only = int(y[0])
        return f"auc needs both classes; every label is {only}"
    return f"{metric} is undefined: every label is {y[0]:g}"


def worse_by(metric_direction: str, value: float, reference: float) -> float:
    """How much worse `value` is than `reference`, in the metric's units (negative: better)."""
    return reference - value if metric_direction == "maximize" else value - reference
