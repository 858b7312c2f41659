"""churn in the sandbox: a healthy model whose world moves when the page's drift control says so.

A data scientist's module for modelbot's generated pipeline (dags/modelbot_pipelines.py), served by
modelbot-serve on each of churn-prod's variants: a logistic regression on two standardised features.

Where the labelled customers come from: a real `preprocess` reads the last weeks of labelled customers from the
warehouse; here they are drawn from churn's world as it is now. The sandbox publishes that world (how much
tenure and complaints weigh on churning today) as JSON at MODELBOT_SANDBOX_WORLD (an S3 URI, set on the Airflow
workers); the drift control on the sandbox's page moves it day by day, so a model trained before the drift
decays in production, and one retrained after it fits the world again. Without MODELBOT_SANDBOX_WORLD:
the world before any drift.

Run conf (values are strings): rows=1500, epochs=200, seed=42, features=tenure_z,complaints_z (the columns
`train` uses; v41, in production when the sandbox starts, learned from tenure_z alone).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

FEATURES = ["tenure_z", "complaints_z"]
WORLD_ENV = "MODELBOT_SANDBOX_WORLD"
# churn's world before any drift: the log-odds of churning per unit of each feature.
CALM_WORLD = {"intercept": -0.3, "tenure_z": 1.5, "complaints_z": 1.0}

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


def current_world() -> dict:
    """churn's world now: the JSON the sandbox publishes at MODELBOT_SANDBOX_WORLD, else the calm world."""
    uri = os.environ.get(WORLD_ENV)
    if not uri:
        return dict(CALM_WORLD)
    import boto3

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return {k: float(v) for k, v in json.loads(body)["coefficients"].items()}


def draw_customers(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Customers as they come (the sandbox's traffic sends these too)."""
    return pd.DataFrame(rng.normal(size=(n, 2)).round(5), columns=FEATURES)


def churn_probability(world: dict, customers: pd.DataFrame) -> np.ndarray:
    """The world's truth for these customers (only the sandbox knows it)."""
    z = world["intercept"] + sum(world[f] * customers[f].to_numpy(dtype=float) for f in FEATURES)
    return 1.0 / (1.0 + np.exp(-z))


def preprocess(conf: dict) -> dict:
    """{"train": DataFrame, "validation": DataFrame}, both with the label column `churned`."""
    rng = np.random.default_rng(int(conf.get("seed", 42)))
    frame = draw_customers(rng, int(conf.get("rows", 1500)))
    frame["churned"] = (rng.random(len(frame)) < churn_probability(current_world(), frame)).astype(int)
    cut = len(frame) * 2 // 3
    return {"train": frame.iloc[:cut].reset_index(drop=True), "validation": frame.iloc[cut:].reset_index(drop=True)}


def train(frame: pd.DataFrame, conf: dict) -> dict:
    """Batch gradient descent on the log loss; the model is a plain dict (anything picklable will do)."""
    features = [f.strip() for f in str(conf.get("features", ",".join(FEATURES))).split(",") if f.strip()]
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
