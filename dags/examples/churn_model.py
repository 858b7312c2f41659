"""A model in three functions, for modelbot's generated pipeline (dags/modelbot_pipelines.py).

The logistic regression of the example lifecycle DAG, in numpy: `preprocess` makes (synthetic) data, `train`
fits the weights, `predict` scores rows. Everything else (artifacts, evaluation against production, the
Model Registry, the endpoint, the rollout) is done for you.

Run conf (from `/model retrain churn key=value ...`, strings): rows=600, epochs=200, seed=42.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES = ["tenure_z", "complaints_z"]


def preprocess(conf: dict) -> dict:
    """{"train": DataFrame, "validation": DataFrame}, both with the label column `churned`."""
    rng = np.random.default_rng(int(conf.get("seed", 42)))
    rows = int(conf.get("rows", 600))
    x = rng.normal(size=(rows, 2))
    p = 1.0 / (1.0 + np.exp(-(1.5 * x[:, 0] + 1.0 * x[:, 1] - 0.3)))
    frame = pd.DataFrame(x.round(5), columns=FEATURES)
    frame["churned"] = (rng.random(rows) < p).astype(int)
    cut = rows * 2 // 3
    return {"train": frame.iloc[:cut].reset_index(drop=True), "validation": frame.iloc[cut:].reset_index(drop=True)}


def train(frame: pd.DataFrame, conf: dict) -> dict:
    """Batch gradient descent on the log loss; the model is a plain dict (anything picklable will do)."""
    features = [c for c in frame.columns if c != "churned"]
    x = np.column_stack([np.ones(len(frame)), frame[features].to_numpy(dtype=float)])
    y = frame["churned"].to_numpy(dtype=float)
    w = np.zeros(x.shape[1])
    for _ in range(int(conf.get("epochs", 200))):
        w -= 0.5 * x.T @ (1.0 / (1.0 + np.exp(-x @ w)) - y) / len(y)
    return {"features": features, "weights": w.tolist()}


def predict(model: dict, features: pd.DataFrame) -> np.ndarray:
    """P(churned == 1) for each row."""
    w = np.asarray(model["weights"])
    x = features[model["features"]].to_numpy(dtype=float)
    return 1.0 / (1.0 + np.exp(-(w[0] + x @ w[1:])))
