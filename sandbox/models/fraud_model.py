"""fraud in the sandbox: a model that evaluates better offline and breaks its own response schema in production.

A data scientist's module for modelbot's generated pipeline (dags/modelbot_pipelines.py), served by
modelbot-serve on each of fraud-prod's variants. The story it tells:

- Labels come from manual review, and reviewers only look at card payments under $2,000, so `preprocess`
  trains and validates on those. Production also sees large business payments (about 6% of them, a few
  thousand dollars each).
- This version of `train` fits a *linear* probability model (`link=linear`, the default): on the reviewed
  payments its log loss beats production's logistic model (v17), so the pipeline promotes it. Its scores grow
  without bound with the amount, and it only floors them at 0.001 (log loss needs p > 0); nothing on the
  reviewed range ever reached 1.
- In production, a payment of a few thousand dollars scores above 1. RESPONSE_SCHEMA says a prediction is at
  most 1, so modelbot-serve answers those requests with a 500 naming the field; CloudWatch counts the 5XX and
  the rollout rolls the candidate back.

`/model retrain fraud link=logit` trains the bounded logistic model instead: a healthy candidate.

Run conf (values are strings): rows=4000, seed=7, link=linear|logit, features=amount,merchant_risk.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES = ["amount", "merchant_risk"]
REVIEWED_BELOW = 2000.0  # dollars: the payments reviewers label

# One request instance: a payment.
REQUEST_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "A card payment",
    "type": "object",
    "properties": {
        "amount": {"type": "number", "minimum": 0, "maximum": 50000, "description": "US dollars"},
        "merchant_risk": {"type": "number", "minimum": 0, "maximum": 1,
                          "description": "the merchant's risk score, 0 (safe) to 1"},
    },
    "required": FEATURES,
    "additionalProperties": False,
}
# One prediction: P(fraud).
RESPONSE_SCHEMA = {"type": "number", "minimum": 0, "maximum": 1, "title": "P(fraud)"}


def draw_payments(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Payments as production sees them (the sandbox's traffic sends these): mostly small card payments, and
    about 6% large business payments."""
    large = rng.random(n) < 0.06
    amount = np.where(large, rng.lognormal(8.7, 0.6, n), rng.lognormal(4.0, 1.1, n))
    return pd.DataFrame({"amount": np.minimum(amount, 49_000).round(2), "merchant_risk": rng.beta(2, 5, n).round(4)})


def fraud_probability(payments: pd.DataFrame) -> np.ndarray:
    """The world's truth (only the sandbox knows it)."""
    z = -4.2 + 3.0 * payments["merchant_risk"] + 2.0 * np.minimum(payments["amount"], 5000) / 1000
    return 1.0 / (1.0 + np.exp(-z.to_numpy()))


def preprocess(conf: dict) -> dict:
    """Reviewed payments (under $2,000) with their label `fraud`: two thirds to train, a third to validate."""
    rng = np.random.default_rng(int(conf.get("seed", 7)))
    frame = draw_payments(rng, int(conf.get("rows", 4000)))
    frame = frame[frame["amount"] < REVIEWED_BELOW].reset_index(drop=True)
    frame["fraud"] = (rng.random(len(frame)) < fraud_probability(frame)).astype(int)
    cut = len(frame) * 2 // 3
    return {"train": frame.iloc[:cut].reset_index(drop=True), "validation": frame.iloc[cut:].reset_index(drop=True)}


def _design(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    columns = [frame[f].to_numpy(dtype=float) / (1000.0 if f == "amount" else 1.0) for f in features]
    return np.column_stack([np.ones(len(frame)), *columns])


def train(frame: pd.DataFrame, conf: dict) -> dict:
    link = str(conf.get("link", "linear"))
    if link not in ("linear", "logit"):
        raise ValueError(f"link={link!r}: say link=linear or link=logit")
    features = [f.strip() for f in str(conf.get("features", ",".join(FEATURES))).split(",") if f.strip()]
    x, y = _design(frame, features), frame["fraud"].to_numpy(dtype=float)
    if link == "linear":  # least squares on the 0/1 label: one solve, no iterations
        w = np.linalg.lstsq(x, y, rcond=None)[0]
    else:
        w = np.zeros(x.shape[1])
        for _ in range(int(conf.get("epochs", 400))):
            w -= 0.5 * x.T @ (1.0 / (1.0 + np.exp(-x @ w)) - y) / len(y)
    return {"features": features, "weights": w.tolist(), "link": link}


def predict(model: dict, features: pd.DataFrame) -> np.ndarray:
    """P(fraud) per payment. The linear model floors its score at 0.001 and has no ceiling."""
    z = _design(features, model["features"]) @ np.asarray(model["weights"])
    if model.get("link") == "linear":
        return np.maximum(z, 0.001)
    return 1.0 / (1.0 + np.exp(-z))
