"""A model module without FEATURES, with pydantic schemas and dict predictions, loading its own model.

The model lives in model.json (not model.pkl): load(model_dir) reads it. A prediction is an object with a label,
a score and the per-class scores, as numpy values (which the runtime turns into JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field


class Address(BaseModel):
    country: str = Field(min_length=2, max_length=2)
    zip: Optional[str] = None


class Customer(BaseModel):
    age: int = Field(ge=18)
    income: Optional[float] = None
    address: Address


class Prediction(BaseModel):
    label: Literal["stay", "leave"]
    score: float = Field(ge=0, le=1)
    scores: list[float]


REQUEST_SCHEMA = Customer.model_json_schema()
RESPONSE_SCHEMA = Prediction.model_json_schema()


def load(model_dir: str) -> dict:
    return json.loads((Path(model_dir) / "model.json").read_text())


def predict(model: dict, features: pd.DataFrame) -> list:
    out = []
    for age, country in zip(features["age"], features["address"].map(lambda a: a["country"])):
        score = np.float32(min(1.0, age / model["max_age"]))
        label = "leave" if score > 0.5 else "stay"
        if country == "XX":  # a label outside RESPONSE_SCHEMA's enum: the 500 case
            label = "unknown"
        out.append({"label": label, "score": score, "scores": np.array([1 - score, score])})
    return out
