"""The model module's contract, for modelbot's generated pipelines (modelbot_pipelines.py imports this file).

A data scientist's module (`pipeline.module` in the models file, importable on the workers) has:

    preprocess(conf: dict) -> {"train": DataFrame, "validation": DataFrame}   (both with the label column)
    train(frame: DataFrame, conf: dict) -> model                              (any picklable object)
    predict(model, features: DataFrame) -> sequence                           (one prediction per row)
    REQUEST_SCHEMA    JSON Schema (draft 2020-12) of ONE request instance, an object
    RESPONSE_SCHEMA   JSON Schema of ONE prediction
    FEATURES          optional: the feature columns, in the order requests and predict see them
    load(model_dir)   optional: how modelbot-serve loads the model (default: unpickle model.pkl)

modelbot-serve turns `{"instances": [...]}` into a DataFrame (columns in FEATURES order when given) and answers
`{"predictions": [...]}`; the pipeline calls predict the same way, and its metric needs one number per row (for
a classifier: the probability of label 1). Everything here names the function and what was wrong.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import math
import pickle
import tarfile
from dataclasses import dataclass
from typing import Any, Callable

import modelbot_schemas as schemas

# metric -> True when higher is better. Classification metrics read predict()'s output as P(label == 1).
HIGHER_IS_BETTER = {"auc": True, "accuracy": True, "f1": True, "logloss": False, "rmse": False, "mae": False,
                    "r2": True}
CLASSIFICATION = ("auc", "accuracy", "f1", "logloss")
REGRESSION = ("rmse", "mae", "r2")
FUNCTIONS = {
    "preprocess": 'preprocess(conf) -> {"train": DataFrame, "validation": DataFrame}',
    "train": "train(frame, conf) -> model",
    "predict": "predict(model, features) -> sequence of numbers",
}
SCHEMAS = {
    "REQUEST_SCHEMA": "the JSON Schema (draft 2020-12) of one request instance, e.g. "
                      '{"type": "object", "properties": {"tenure": {"type": "number"}}, "required": ["tenure"]}',
    "RESPONSE_SCHEMA": 'the JSON Schema of one prediction, e.g. {"type": "number", "minimum": 0, "maximum": 1}',
}


class Unretryable(Exception):
    """A step cannot succeed by trying again: the message says why and what to do (the task fails at once)."""


class DefinitionError(Unretryable):
    """The model's module breaks the contract; names the function (or schema) and what was wrong."""


# ---------------------------------------------------------------- metrics (numpy only)

def _auc(y, s):
    import numpy as np

    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=float)
    # Average ranks for ties: each run of equal scores gets the mean of its positions.
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def _accuracy(y, s):
    return float(((s >= 0.5).astype(int) == y).mean())


def _f1(y, s):
    pred = (s >= 0.5).astype(int)
    tp = float(((pred == 1) & (y == 1)).sum())
    fp = float(((pred == 1) & (y == 0)).sum())
    fn = float(((pred == 0) & (y == 1)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def _logloss(y, s):
    import numpy as np

    p = np.clip(s, 1e-15, 1 - 1e-15)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def _rmse(y, s):
    import numpy as np

    return float(np.sqrt(((y - s) ** 2).mean()))


def _mae(y, s):
    import numpy as np

    return float(np.abs(y - s).mean())


def _r2(y, s):
    total = float(((y - y.mean()) ** 2).sum())
    if total == 0:
        return float("nan")
    return 1.0 - float(((y - s) ** 2).sum()) / total


METRICS: dict[str, Callable] = {"auc": _auc, "accuracy": _accuracy, "f1": _f1, "logloss": _logloss,
                                "rmse": _rmse, "mae": _mae, "r2": _r2}


def metric_value(name: str, y_true, y_score) -> float:
    """The metric on numpy arrays; ValueError says why it cannot be computed."""
    import numpy as np

    y = np.asarray(y_true, dtype=float)
    s = np.asarray(y_score, dtype=float)
    if name in CLASSIFICATION:
        if not np.isin(y, (0.0, 1.0)).all():
            odd = sorted({v for v in y.tolist() if v not in (0.0, 1.0)})[:5]
            raise ValueError(f"{name} needs a 0/1 label; the label holds {odd}")
        y = y.astype(int)
        if name == "logloss" and ((s < 0) | (s > 1)).any():
            raise ValueError("logloss needs probabilities in [0, 1] from predict()")
    value = METRICS[name](y, s)
    if not math.isfinite(value):
        why = "the validation data holds only one class" if name == "auc" else "the label is constant"
        raise ValueError(f"{name} is undefined here: {why}")
    return value


def all_metrics(metric: str, y_true, y_score) -> dict[str, float]:
    """Every metric of the model's kind (classification or regression) that can be computed."""
    values = {}
    for name in (CLASSIFICATION if metric in CLASSIFICATION else REGRESSION):
        try:
            values[name] = round(metric_value(name, y_true, y_score), 6)
        except ValueError:
            pass
    return values


def decide(direction: str, candidate: float, production: float | None, min_improvement: float) -> bool:
    """Promote when nothing is in production, or the candidate is strictly better by at least min_improvement."""
    if production is None:
        return True
    gain = candidate - production if direction == "maximize" else production - candidate
    return gain > 0 and gain >= min_improvement - 1e-9  # 0.35 - 0.30 is 0.04999... in floating point


# ---------------------------------------------------------------- the module

@dataclass(frozen=True)
class Contract:
    """What the module declares, checked: its three functions, its two schemas, its feature order."""

    module: str
    preprocess: Callable
    train: Callable
    predict: Callable
    request_schema: dict
    response_schema: Any
    features: tuple[str, ...] | None = None

    def schemas_document(self) -> dict:
        """The schemas as the Model Registry package keeps them (schemas.json)."""
        return {"request": self.request_schema, "response": self.response_schema,
                "features": list(self.features) if self.features else None}


def load_contract(module_name: str) -> Contract:
    """The module's three functions and two schemas, each checked (all problems at once, each named)."""
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise DefinitionError(f"module {module_name!r} could not be imported on this worker: "
                              f"{type(exc).__name__}: {exc}") from exc
    functions, problems = {}, []
    arity = {"preprocess": 1, "train": 2, "predict": 2}
    for name, shape in FUNCTIONS.items():
        fn = getattr(module, name, None)
        if fn is None:
            problems.append(f"{module_name}.{name} is missing: define {shape}")
            continue
        if not callable(fn):
            problems.append(f"{module_name}.{name} is a {type(fn).__name__}, not a function: define {shape}")
            continue
        try:
            inspect.signature(fn).bind(*range(arity[name]))
        except TypeError:
            problems.append(f"{module_name}.{name}{_signature(fn)} cannot be called as {shape.split(' ->')[0]}")
        except ValueError:  # no signature (a builtin): find out when it is called
            pass
        functions[name] = fn
    declared = {}
    for name, shape in SCHEMAS.items():
        if not hasattr(module, name):
            problems.append(f"{module_name}.{name} is missing: declare {shape}")
            continue
        declared[name] = getattr(module, name)
        problems.extend(f"{module_name}.{p}" for p in schemas.schema_problems(
            name, declared[name], instance=name == "REQUEST_SCHEMA"))
    features = getattr(module, "FEATURES", None)
    if features is not None:
        if (isinstance(features, (str, bytes)) or not isinstance(features, (list, tuple)) or not features
                or not all(isinstance(f, str) and f for f in features)):
            problems.append(f"{module_name}.FEATURES must be a list of column names (strings), e.g. "
                            "['tenure', 'plan']")
        elif len(set(features)) != len(features):
            twice = sorted({f for f in features if list(features).count(f) > 1})
            problems.append(f"{module_name}.FEATURES names {', '.join(map(repr, twice))} twice")
    if problems:
        raise DefinitionError("; ".join(problems))
    return Contract(module=module_name, preprocess=functions["preprocess"], train=functions["train"],
                    predict=functions["predict"], request_schema=declared["REQUEST_SCHEMA"],
                    response_schema=declared["RESPONSE_SCHEMA"], features=tuple(features) if features else None)


def _signature(fn) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(...)"


def check_frames(value: Any, label: str, module_name: str) -> dict[str, Any]:
    import pandas as pd

    where = f"{module_name}.preprocess(conf)"
    if not isinstance(value, dict):
        raise DefinitionError(f"{where} must return {{'train': DataFrame, 'validation': DataFrame}}; "
                              f"it returned {type(value).__name__}")
    frames = {}
    for part in ("train", "validation"):
        if part not in value:
            raise DefinitionError(f"{where} returned no {part!r} (keys: {', '.join(map(str, value)) or 'none'}); "
                                  "it must return {'train': DataFrame, 'validation': DataFrame}")
        frame = value[part]
        if not isinstance(frame, pd.DataFrame):
            raise DefinitionError(f"{where}[{part!r}] is a {type(frame).__name__}, not a pandas DataFrame")
        if label not in frame.columns:
            cols = ", ".join(map(str, frame.columns[:12])) or "none"
            raise DefinitionError(f"{where}[{part!r}] has no label column {label!r} (columns: {cols}); "
                                  "the models file names it in pipeline.label")
        if len(frame) == 0:
            raise DefinitionError(f"{where}[{part!r}] has no rows")
        if frame.columns.drop(label).empty:
            raise DefinitionError(f"{where}[{part!r}] has only the label column: no features to learn from")
        frames[part] = frame
    return frames


def call_train(fn: Callable, frame, conf: dict, module_name: str) -> tuple[Any, bytes]:
    model = fn(frame, dict(conf))
    where = f"{module_name}.train(frame, conf)"
    if model is None:
        raise DefinitionError(f"{where} returned None; it must return the trained model (any picklable object)")
    try:
        blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise DefinitionError(f"{where} returned a {type(model).__name__} that cannot be pickled: "
                              f"{type(exc).__name__}: {exc}") from exc
    return model, blob


def features_of(contract: Contract, frame, label: str, where: str):
    """The features predict sees: every column but the label, in FEATURES order when the module declares it
    (as modelbot-serve builds them from a request)."""
    features = frame.drop(columns=[label])
    if contract.features is None:
        return features
    missing = [f for f in contract.features if f not in features.columns]
    if missing:
        cols = ", ".join(map(str, features.columns[:12])) or "none"
        raise DefinitionError(f"{contract.module}.FEATURES names {', '.join(map(repr, missing))}, which "
                              f"{where} lacks (columns: {cols})")
    return features[list(contract.features)]


def request_instances(features) -> list[dict]:
    """Each row as a client sends it: a JSON object (NaN -> null, numpy types and timestamps as JSON has them)."""
    return json.loads(features.to_json(orient="records", date_format="iso", double_precision=15))


def check_requests(contract: Contract, features, what: str = "validation") -> int:
    """Every row against REQUEST_SCHEMA: what modelbot-serve would answer 400 to fails here, row, field and rule
    named. Returns how many rows were checked."""
    rows = request_instances(features)
    labels = [f"{what} row {i} (index {index!r})" for i, index in enumerate(features.index)]
    refused = schemas.refusals(schemas.validator(contract.request_schema), rows, labels)
    if refused:
        raise DefinitionError(
            f"{contract.module}.REQUEST_SCHEMA refuses {refused.refused} of {refused.total} {what} rows, so "
            f"modelbot-serve would answer 400 to requests like them: " + " | ".join(refused.lines)
            + (" | ..." if refused.refused > len(refused.lines) else ""))
    return len(rows)


def _prediction_list(out) -> list:
    if hasattr(out, "to_numpy") and getattr(out, "ndim", 1) == 2:  # a DataFrame: one row per prediction
        return [schemas.json_value(row) for row in out.to_numpy().tolist()]
    return [schemas.json_value(v) for v in (out.tolist() if hasattr(out, "tolist") else list(out))]


def call_predict(fn: Callable, model, features, module_name: str, whose: str, *, response_schema: Any = None,
                 row_labels: list[str] | None = None):
    """predict()'s output as a 1-D float array with one finite number per row. With `response_schema`, each
    prediction is first checked against it, as modelbot-serve checks them (a 500 there)."""
    import numpy as np

    where = f"{module_name}.predict(model, features) on the {whose} model"
    out = fn(model, features)
    if out is None or isinstance(out, (str, bytes, dict)) or not hasattr(out, "__len__"):
        raise DefinitionError(f"{where} returned {type(out).__name__}; it must return a sequence of numbers, "
                              "one per row of features")
    if len(out) != len(features):
        raise DefinitionError(f"{where} returned {len(out)} values for {len(features)} rows")
    if response_schema is not None:
        labels = row_labels or [f"prediction {i}" for i in range(len(features))]
        refused = schemas.refusals(schemas.validator(response_schema), _prediction_list(out), labels)
        if refused:
            raise DefinitionError(
                f"{module_name}.RESPONSE_SCHEMA refuses {refused.refused} of {refused.total} predictions of the "
                f"{whose} model, so modelbot-serve would answer 500 to requests like them: "
                + " | ".join(refused.lines) + (" | ..." if refused.refused > len(refused.lines) else ""))
    try:
        values = np.asarray(out, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"{where} returned values that are not numbers ({exc}); the pipeline's metric needs "
                              "one number per row") from exc
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise DefinitionError(f"{where} returned an array of shape {values.shape}; it must return one number "
                              "per row (for a classifier: the probability of label 1)")
    if not np.isfinite(values).all():
        raise DefinitionError(f"{where} returned {int((~np.isfinite(values)).sum())} NaN or infinite values")
    return values


# ---------------------------------------------------------------- the model's archive

def model_tarball(model_blob: bytes) -> bytes:
    """model.tar.gz as SageMaker expects it: the pickled model at the archive's root as model.pkl."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.pkl")
        info.size = len(model_blob)
        info.mtime = 0  # the same model gives the same bytes
        tar.addfile(info, io.BytesIO(model_blob))
    return buf.getvalue()


def model_from_tarball(body: bytes) -> Any:
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        member = tar.extractfile("model.pkl")
        return pickle.loads(member.read())


