"""A model in three functions and two schemas, for modelbot's generated pipeline (dags/modelbot_pipelines.py).

The logistic regression of the example lifecycle DAG, in numpy: `preprocess` makes (synthetic) data, `train`
fits the weights, `predict` scores rows. REQUEST_SCHEMA says what one request instance must hold, and
RESPONSE_SCHEMA what one prediction is: modelbot-serve answers 400 to a request that breaks the first (naming
the field) and 500 to a prediction that breaks the second, and the pipeline checks both before deploying.
Everything else (artifacts, evaluation against production, the Model Registry, the endpoint, data capture, the
rollout) is done for you.

Run conf (from `/model retrain churn key=value ...`, strings): rows=600, epochs=200, seed=42.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES = ["tenure_z", "complaints_z"]

# One request instance: {"tenure_z": 0.3, "complaints_z": -1.2}. Standardised values, so a bound far outside
# the data catches a caller sending raw units (days, counts) instead.
REQUEST_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "A customer, standardised",
    "type": "object",
    "properties": {
        "tenure_z": {"type": "number", "minimum": -10, "maximum": 10, "description": "tenure, z-score"},
        "complaints_z": {"type": "number", "minimum": -10, "maximum": 10, "description": "complaints, z-score"},
    },
    "required": FEATURES,
    "additionalProperties": False,
}
# One prediction: P(churned == 1).
RESPONSE_SCHEMA = {"type": "number", "minimum": 0, "maximum": 1, "title": "P(churn)"}


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
    """P(churned == 1) for each row.

    modelbot-serve and the pipeline pass exactly the FEATURES columns, in that order: when they are the model's own,
    the values are used as they come. Selecting columns by name costs pandas about 0.1 ms, ten times the rest of
    this function, so it is done only for a frame in another order (a notebook's) or a model trained on others.
    """
    names = model["features"]
    x = (features if features.columns.tolist() == names else features[names]).to_numpy(dtype=float)
    w = np.asarray(model["weights"])
    return 1.0 / (1.0 + np.exp(-(w[0] + x @ w[1:])))
