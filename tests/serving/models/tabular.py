"""A model module as a data scientist writes it, for the serving tests: FEATURES, both schemas, predict.

The model (model.pkl) is {"scale": float}. A prediction is checkable from its row alone:
scale * (tenure_months % 100) / 100 + 0.25 if plan == "pro". Two rows misbehave on purpose: monthly_spend 666
predicts 1.5 (breaking RESPONSE_SCHEMA's maximum) and tenure_months 999 makes predict raise; tenure_months 777
makes predict sleep (SLOW_SECONDS), for the timeout.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

FEATURES = ["tenure_months", "monthly_spend", "plan"]
REQUEST_SCHEMA = {
    "type": "object",
    "properties": {
        "tenure_months": {"type": "integer", "minimum": 0},
        "monthly_spend": {"type": "number"},
        "plan": {"enum": ["basic", "pro"]},
    },
    "required": ["tenure_months", "plan"],
    "additionalProperties": False,
}
RESPONSE_SCHEMA = {"type": "number", "minimum": 0, "maximum": 1}
SLOW_SECONDS = 30


def expected(row: dict, scale: float) -> float:
    return scale * (row["tenure_months"] % 100) / 100 + (0.25 if row["plan"] == "pro" else 0.0)


def predict(model: dict, features: pd.DataFrame) -> np.ndarray:
    if list(features.columns) != FEATURES:
        raise AssertionError(f"columns {list(features.columns)}")
    if (features["tenure_months"] == 999).any():
        raise ValueError("tenure_months 999 is a sentinel, not a tenure")
    if (features["tenure_months"] == 777).any():
        time.sleep(SLOW_SECONDS)
    scores = model["scale"] * (features["tenure_months"] % 100) / 100 + np.where(features["plan"] == "pro", 0.25, 0)
    return np.where(features["monthly_spend"] == 666, 1.5, scores)
