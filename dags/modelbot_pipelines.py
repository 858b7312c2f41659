"""modelbot pipelines: one Airflow DAG per model whose models-file entry has a `[models.X.pipeline]` section.

Drop this file into Airflow's DAGs folder. It reads modelbot's models file (MODELS_FILE, else `models.toml`
beside this file) and builds, for each such model, the DAG named by its `dag_id`:

    preprocess -> train -> evaluate -> deploy

following modelbot's XCom contract (DESIGN.md, "Airflow contract"). The data scientist writes only a module
(`pipeline.module`, importable on the workers, e.g. a file next to this one) with three functions:

    preprocess(conf: dict) -> {"train": DataFrame, "validation": DataFrame}   (both with the label column)
    train(frame: DataFrame, conf: dict) -> model                              (any picklable object)
    predict(model, features: DataFrame) -> sequence of numbers               (scores or values, one per row)

- preprocess and train write the datasets, the pickled model and a `model.tar.gz` for SageMaker under
  `<artifacts>/<dag_id>/<run_id>/`.
- evaluate scores the candidate and the production model (the newest Approved package in the Model Registry
  group named after the model, loaded from its model.tar.gz) on the same validation data, writes
  diagnostics.csv and evaluation.json, and decides `promote` from `direction` and `min_improvement`.
- deploy (skipped unless promoting) registers the candidate as a model package (PendingManualApproval, with the
  evaluation as its metrics), creates the SageMaker Model, and moves the endpoint to a new config that keeps
  every current variant and adds the candidate at weight 0; modelbot rolls it out and later approves or
  rejects the package. An endpoint that does not exist yet is created with the candidate alone (a first
  model: nothing to roll out against, so its package is approved at once). No endpoint is ever deleted.

Workers need only Airflow, boto3, pandas and numpy; this file does not import modelbot. AWS settings are
boto3's (environment, instance role); an Airflow connection `aws_default`, when defined, adds its keys
(login/password), `region_name`, `endpoint_url` and `service_config.<service>.endpoint_url` from its extra.

Run conf (from `/model retrain <model> key=value ...`, values are strings) is handed to preprocess and train
as is; `candidate_variant=NAME` names the new variant (default: the highest variant number + 1, e.g. v42).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import io
import json
import logging
import math
import os
import pickle
import re
import tarfile
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

try:
    import pendulum
    from airflow.sdk import dag, get_current_context, task
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
except ImportError:  # loaded outside Airflow (`modelbot pipeline check`, unit tests): the steps only
    dag = None

    class AirflowFailException(Exception):  # type: ignore[no-redef]
        pass

    class AirflowSkipException(Exception):  # type: ignore[no-redef]
        pass


log = logging.getLogger(__name__)

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
FIRST_VARIANT = "v1"
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
AWS_CONNECTION = "aws_default"


class PipelineConfigError(Exception):
    """The models file cannot build a pipeline; names the file, the model and the field."""


class DefinitionError(Exception):
    """The model's module breaks the three-function contract; names the function and what was wrong."""


# ---------------------------------------------------------------- the models file

@dataclass(frozen=True)
class Pipeline:
    model: str
    dag_id: str
    endpoint: str
    metric: str
    direction: str
    region: str
    module: str
    label: str
    image: str
    artifacts: str
    schedule: str | None = None
    min_improvement: float = 0.0
    instance_type: str | None = None
    execution_role: str | None = None

    @property
    def group(self) -> str:
        """The Model Registry group: named after the model."""
        return self.model

    def run_prefix(self, run_id: str) -> str:
        return f"{self.artifacts.rstrip('/')}/{self.dag_id}/{run_id}"


_PIPELINE_FIELDS = {"module", "label", "image", "artifacts", "schedule", "min_improvement", "instance_type",
                    "execution_role"}
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def models_file() -> Path:
    explicit = os.environ.get("MODELS_FILE")
    return Path(explicit) if explicit else Path(__file__).resolve().parent / "models.toml"


def load_pipelines(path: str | Path) -> list[Pipeline]:
    """Every model with a pipeline section. Checks only what the DAG uses; modelbot checks the rest."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineConfigError(f"{path}: models file not found; set MODELS_FILE on the Airflow workers or put "
                                  "models.toml next to modelbot_pipelines.py") from None
    except tomllib.TOMLDecodeError as exc:
        raise PipelineConfigError(f"{path}: not valid TOML: {exc}") from None
    defaults = raw.get("defaults") or {}
    found, problems = [], []
    for name, spec in sorted((raw.get("models") or {}).items()):
        section = spec.get("pipeline") if isinstance(spec, dict) else None
        if section is None:
            continue

        def bad(field: str, what: str) -> None:
            problems.append(f"{path}: model {name!r}, field {field!r}: {what}")

        if not isinstance(section, dict):
            bad("pipeline", "must be a table ([models.X.pipeline])")
            continue
        for key in sorted(set(section) - _PIPELINE_FIELDS):
            bad(f"pipeline.{key}", f"unknown field; known: {', '.join(sorted(_PIPELINE_FIELDS))}")
        for key in ("dag_id", "endpoint", "metric"):
            if not isinstance(spec.get(key), str) or not spec.get(key):
                bad(key, "is required for a model with a pipeline")
        for key in ("module", "label", "image", "artifacts"):
            if not isinstance(section.get(key), str) or not section.get(key):
                bad(f"pipeline.{key}", "is required")
        metric, direction = spec.get("metric"), spec.get("direction", "maximize")
        if isinstance(metric, str) and metric and metric not in HIGHER_IS_BETTER:
            bad("metric", f"{metric!r} is not a metric the pipeline computes ({', '.join(HIGHER_IS_BETTER)})")
        if direction not in ("maximize", "minimize"):
            bad("direction", "must be 'maximize' or 'minimize'")
        module = section.get("module")
        if isinstance(module, str) and module and not _MODULE_NAME.match(module):
            bad("pipeline.module", f"{module!r} is not an importable module name (e.g. 'churn_model')")
        artifacts = section.get("artifacts")
        if isinstance(artifacts, str) and artifacts and not re.match(r"^s3://[^/]+", artifacts):
            bad("pipeline.artifacts", f"{artifacts!r} is not an S3 location (s3://bucket/prefix)")
        improvement = section.get("min_improvement", 0.0)
        if isinstance(improvement, bool) or not isinstance(improvement, (int, float)) or improvement < 0:
            bad("pipeline.min_improvement", "must be a number, zero or more")
        for key in ("schedule", "instance_type", "execution_role"):
            if key in section and (not isinstance(section[key], str) or not section[key]):
                bad(f"pipeline.{key}", "must be a non-empty string")
        if any(p.startswith(f"{path}: model {name!r}") for p in problems):
            continue
        found.append(Pipeline(
            model=name, dag_id=spec["dag_id"], endpoint=spec["endpoint"], metric=metric, direction=direction,
            region=spec.get("region") or defaults.get("region") or "us-east-1", module=module,
            label=section["label"], image=section["image"], artifacts=artifacts, schedule=section.get("schedule"),
            min_improvement=float(improvement), instance_type=section.get("instance_type"),
            execution_role=section.get("execution_role"),
        ))
    if problems:
        raise PipelineConfigError("\n".join(problems))
    return found


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


# ---------------------------------------------------------------- the three functions

def load_functions(module_name: str) -> dict[str, Callable]:
    """The module's three functions, each checked to exist and to take its arguments."""
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
    if problems:
        raise DefinitionError("; ".join(problems))
    return functions


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


def call_predict(fn: Callable, model, features, module_name: str, whose: str):
    """predict()'s output as a 1-D float array with one finite number per row."""
    import numpy as np

    where = f"{module_name}.predict(model, features) on the {whose} model"
    out = fn(model, features)
    if out is None or isinstance(out, (str, bytes, dict)) or not hasattr(out, "__len__"):
        raise DefinitionError(f"{where} returned {type(out).__name__}; it must return a sequence of numbers, "
                              "one per row of features")
    try:
        values = np.asarray(out, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"{where} returned values that are not numbers ({exc})") from exc
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise DefinitionError(f"{where} returned an array of shape {values.shape}; it must return one number "
                              "per row (for a classifier: the probability of label 1)")
    if len(values) != len(features):
        raise DefinitionError(f"{where} returned {len(values)} values for {len(features)} rows")
    if not np.isfinite(values).all():
        raise DefinitionError(f"{where} returned {int((~np.isfinite(values)).sum())} NaN or infinite values")
    return values


# ---------------------------------------------------------------- artifacts

def split_s3(uri: str) -> tuple[str, str]:
    match = re.match(r"^s3://([^/]+)/?(.*)$", uri)
    if not match:
        raise ValueError(f"{uri!r} is not an S3 location")
    return match.group(1), match.group(2)


class S3Artifacts:
    """Artifacts in S3 (the DAG)."""

    def __init__(self, s3):
        self.s3 = s3

    def put(self, uri: str, body: bytes) -> str:
        bucket, key = split_s3(uri)
        try:
            self.s3.put_object(Bucket=bucket, Key=key, Body=body)
        except Exception as exc:
            raise RuntimeError(f"S3 did not store {uri}: {exc}") from exc
        return uri

    def get(self, uri: str) -> bytes:
        bucket, key = split_s3(uri)
        try:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise RuntimeError(f"S3 did not return {uri}: {exc}") from exc


class MemoryArtifacts:
    """Artifacts kept in memory, by the URI they would have (`modelbot pipeline check`)."""

    def __init__(self):
        self.blobs: dict[str, bytes] = {}

    def put(self, uri: str, body: bytes) -> str:
        self.blobs[uri] = body
        return uri

    def get(self, uri: str) -> bytes:
        return self.blobs[uri]


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


# ---------------------------------------------------------------- the steps (no Airflow in here)

def step_preprocess(p: Pipeline, conf: dict, run_id: str, artifacts) -> dict:
    import pandas as pd  # noqa: F401  (the frames are pickled with it)

    functions = load_functions(p.module)  # all three, so a missing predict fails before hours of training
    frames = check_frames(functions["preprocess"](dict(conf)), p.label, p.module)
    prefix = p.run_prefix(run_id)
    uris = {}
    for part, frame in frames.items():
        uris[f"{part}_uri"] = artifacts.put(f"{prefix}/{part}.pkl", pickle.dumps(frame, pickle.HIGHEST_PROTOCOL))
    return {**uris, "rows": {part: len(frame) for part, frame in frames.items()},
            "features": [str(c) for c in frames["train"].columns if c != p.label]}


def step_train(p: Pipeline, conf: dict, run_id: str, data: dict, artifacts) -> dict:
    functions = load_functions(p.module)
    frame = pickle.loads(artifacts.get(data["train_uri"]))
    _, blob = call_train(functions["train"], frame, conf, p.module)
    prefix = p.run_prefix(run_id)
    return {"model_uri": artifacts.put(f"{prefix}/model.pkl", blob),
            "model_data_url": artifacts.put(f"{prefix}/model.tar.gz", model_tarball(blob))}


def step_evaluate(p: Pipeline, run_id: str, data: dict, trained: dict, artifacts,
                  production: Callable[[], tuple[Any, str] | None]) -> dict:
    """The XCom contract's evaluation. `production()` gives (model, package ARN) or None."""
    functions = load_functions(p.module)
    validation = pickle.loads(artifacts.get(data["validation_uri"]))
    features = validation.drop(columns=[p.label])
    y_true = validation[p.label].to_numpy()
    candidate_model = pickle.loads(artifacts.get(trained["model_uri"]))
    cand_scores = call_predict(functions["predict"], candidate_model, features, p.module, "candidate")
    try:
        candidate = metric_value(p.metric, y_true, cand_scores)
    except ValueError as exc:
        raise DefinitionError(f"{p.metric} of the candidate on the validation data: {exc}") from exc
    found = production()
    prod_value, prod_package, prod_all = None, None, None
    if found is not None:
        prod_model, prod_package = found
        prod_scores = call_predict(functions["predict"], prod_model, features, p.module,
                                   f"production ({prod_package})")
        prod_value = metric_value(p.metric, y_true, prod_scores)
        prod_all = all_metrics(p.metric, y_true, prod_scores)
    promote = decide(p.direction, candidate, prod_value, p.min_improvement)
    prefix = p.run_prefix(run_id)
    csv = io.StringIO()
    csv.write("y_true,y_pred\n")
    for t, s in zip(y_true.tolist(), cand_scores.tolist()):
        csv.write(f"{t},{round(s, 6)}\n")
    diagnostics = artifacts.put(f"{prefix}/diagnostics.csv", csv.getvalue().encode())
    report = {"metric": p.metric, "direction": p.direction, "min_improvement": p.min_improvement,
              "validation_rows": len(validation), "promote": promote,
              "candidate": all_metrics(p.metric, y_true, cand_scores),
              "production": prod_all, "production_model_package": prod_package}
    artifacts.put(f"{prefix}/evaluation.json", json.dumps(report, indent=2).encode())
    return {"metric": p.metric, "candidate": round(candidate, 6),
            "production": None if prod_value is None else round(prod_value, 6), "promote": promote,
            "diagnostics_uri": diagnostics}


# ---------------------------------------------------------------- AWS

def aws_client(service: str, region: str, overrides: dict | None = None):
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 5})
    kwargs = dict(overrides or {})
    per_service = kwargs.pop("service_config", {}) or {}
    endpoint = (per_service.get(service) or {}).get("endpoint_url") or kwargs.pop("endpoint_url", None)
    kwargs.pop("endpoint_url", None)
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    region = kwargs.pop("region_name", None) or region
    return boto3.client(service, region_name=region, config=config, **kwargs)


def connection_overrides(conn) -> dict:
    """boto3 settings from an Airflow AWS connection (the amazon provider's conventions, a subset)."""
    if conn is None:
        return {}
    extra = dict(conn.extra_dejson or {})
    out: dict[str, Any] = {}
    if conn.login and conn.password:
        out["aws_access_key_id"], out["aws_secret_access_key"] = conn.login, conn.password
        if extra.get("aws_session_token"):
            out["aws_session_token"] = extra["aws_session_token"]
    for key in ("region_name", "endpoint_url", "service_config"):
        if extra.get(key):
            out[key] = extra[key]
    return out


def _client_error(exc) -> tuple[str, str]:
    err = getattr(exc, "response", {}).get("Error", {}) if hasattr(exc, "response") else {}
    return err.get("Code", type(exc).__name__), err.get("Message", str(exc))


def _not_found(exc) -> bool:
    code, message = _client_error(exc)
    return code in ("ValidationException", "ResourceNotFound") and (
        "Could not find" in message or "not found" in message.lower() or "does not exist" in message)


def _sagemaker(what: str, not_done: str, call: Callable, **kwargs):
    """One SageMaker call; a failure names SageMaker, what was asked and what was not done."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        code, message = _client_error(exc)
        raise RuntimeError(f"SageMaker did not {what} ({code}: {message}); {not_done}") from exc


def package_version(arn: str) -> int | None:
    tail = arn.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def newest_approved(sm, group: str) -> dict | None:
    """The newest Approved package of the group (describe_model_package's answer), or None."""
    from botocore.exceptions import ClientError

    try:
        sm.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as exc:
        if _not_found(exc):
            return None
        raise
    listed = _sagemaker(f"list the Approved packages of model package group {group!r}",
                        "production could not be evaluated", sm.list_model_packages,
                        ModelPackageGroupName=group, ModelApprovalStatus="Approved", SortBy="CreationTime",
                        SortOrder="Descending", MaxResults=20)["ModelPackageSummaryList"]
    if not listed:
        return None
    newest = max(listed, key=lambda s: (s.get("ModelPackageVersion") or 0, str(s.get("CreationTime"))))
    return _sagemaker(f"describe model package {newest['ModelPackageArn']}", "production could not be evaluated",
                      sm.describe_model_package, ModelPackageName=newest["ModelPackageArn"])


def production_loader(sm, artifacts, group: str) -> Callable[[], tuple[Any, str] | None]:
    def load() -> tuple[Any, str] | None:
        package = newest_approved(sm, group)
        if package is None:
            return None
        arn = package["ModelPackageArn"]
        containers = (package.get("InferenceSpecification") or {}).get("Containers") or []
        url = next((c.get("ModelDataUrl") for c in containers if c.get("ModelDataUrl")), None)
        if not url:
            raise DefinitionError(f"the production package {arn} has no ModelDataUrl, so it cannot be evaluated "
                                  "on the validation data; approve a package this pipeline registered")
        try:
            return model_from_tarball(artifacts.get(url)), arn
        except (KeyError, tarfile.TarError, pickle.UnpicklingError, AttributeError, ModuleNotFoundError) as exc:
            raise DefinitionError(f"the production package {arn}: {url} holds no loadable model.pkl "
                                  f"({type(exc).__name__}: {exc})") from exc
    return load


def _short(text: str, n: int) -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", text)[:n].strip("-")


def next_variant(names: list[str], stable: str, run_id: str) -> str:
    match = re.match(r"^(.*?)(\d+)$", stable)
    if not match:
        return f"{_short(stable, 40)}-{hashlib.sha1(run_id.encode()).hexdigest()[:6]}"
    prefix = match.group(1)
    numbers = [int(m.group(1)) for n in names if (m := re.match(rf"^{re.escape(prefix)}(\d+)$", n))]
    return f"{prefix}{max(numbers) + 1}"


def _find_registered(sm, group: str, dag_id: str, run_id: str) -> str | None:
    """The package this run registered before (a retried deploy), found by its metadata."""
    listed = _sagemaker(f"list the packages of model package group {group!r}", "nothing was registered",
                        sm.list_model_packages, ModelPackageGroupName=group, SortBy="CreationTime",
                        SortOrder="Descending", MaxResults=20)["ModelPackageSummaryList"]
    for summary in listed:
        desc = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        meta = desc.get("CustomerMetadataProperties") or {}
        if meta.get("modelbot_dag_id") == dag_id and meta.get("modelbot_run_id") == run_id:
            return desc["ModelPackageArn"]
    return None


def register_package(sm, p: Pipeline, run_id: str, evaluation: dict, trained: dict, instance_type: str) -> str:
    from botocore.exceptions import ClientError

    try:
        sm.describe_model_package_group(ModelPackageGroupName=p.group)
    except ClientError as exc:
        if not _not_found(exc):
            raise
        _sagemaker(f"create model package group {p.group!r}", "the candidate was not registered",
                   sm.create_model_package_group, ModelPackageGroupName=p.group,
                   ModelPackageGroupDescription=f"modelbot: versions of the model {p.model}")
    existing = _find_registered(sm, p.group, p.dag_id, run_id)
    if existing:
        return existing
    metadata = {"modelbot_dag_id": p.dag_id, "modelbot_run_id": run_id[:256], "metric": p.metric,
                "candidate": str(evaluation["candidate"]),
                "production": "none" if evaluation["production"] is None else str(evaluation["production"])}
    answer = _sagemaker(
        f"register the candidate in model package group {p.group!r}", "nothing was deployed",
        sm.create_model_package, ModelPackageGroupName=p.group,
        ModelPackageDescription=f"{p.dag_id} run {run_id}"[:1024],
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": p.image, "ModelDataUrl": trained["model_data_url"]}],
            "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"],
            "SupportedRealtimeInferenceInstanceTypes": [instance_type],
        },
        ModelMetrics={"ModelQuality": {"Statistics": {
            "ContentType": "application/json", "S3Uri": f"{p.run_prefix(run_id)}/evaluation.json"}}},
        CustomerMetadataProperties=metadata,
        ClientToken=hashlib.sha1(f"{p.dag_id}/{run_id}".encode()).hexdigest(),
    )
    return answer["ModelPackageArn"]


def _describe_endpoint(sm, name: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return sm.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        if _not_found(exc):
            return None
        raise RuntimeError(f"SageMaker did not describe endpoint {name!r}: {_client_error(exc)[1]}; "
                           "nothing was deployed") from exc


def _ensure_model(sm, name: str, p: Pipeline, trained: dict, role: str | None) -> None:
    from botocore.exceptions import ClientError

    try:
        sm.describe_model(ModelName=name)
        return  # made by an earlier try of this run
    except ClientError as exc:
        if not _not_found(exc):
            raise
    if not role:
        raise DefinitionError(f"no execution role for the SageMaker model of {p.model}: set pipeline.execution_role "
                              "in the models file (needed while the endpoint has no model to copy it from)")
    _sagemaker(f"create model {name!r}", "the endpoint was not changed", sm.create_model, ModelName=name,
               PrimaryContainer={"Image": p.image, "ModelDataUrl": trained["model_data_url"]},
               ExecutionRoleArn=role)


def _ensure_config(sm, name: str, variants: list[dict], extra: dict) -> None:
    from botocore.exceptions import ClientError

    try:
        sm.describe_endpoint_config(EndpointConfigName=name)
        return
    except ClientError as exc:
        if not _not_found(exc):
            raise
    _sagemaker(f"create endpoint config {name!r}", "the endpoint was not changed", sm.create_endpoint_config,
               EndpointConfigName=name, ProductionVariants=variants, **extra)


def _wait_in_service(sm, endpoint: str) -> None:
    delay = 1 if os.environ.get("AWS_ENDPOINT_URL") else 15  # an emulator answers at once
    try:
        sm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint,
                                                  WaiterConfig={"Delay": delay, "MaxAttempts": 240})
    except Exception as exc:
        raise RuntimeError(f"SageMaker endpoint {endpoint!r} did not reach InService: {exc}") from exc


_CONFIG_KEEP = ("DataCaptureConfig", "KmsKeyId", "AsyncInferenceConfig", "ExplainerConfig", "ShadowProductionVariants")


def step_deploy(p: Pipeline, conf: dict, run_id: str, evaluation: dict, trained: dict, sm) -> dict:
    """Registers the package, creates the model, puts it on the endpoint at weight 0 (or creates the endpoint)."""
    if not evaluation.get("promote"):
        raise AirflowSkipException("the candidate is not better than production; nothing to deploy")
    suffix = hashlib.sha1(f"{p.dag_id}/{run_id}".encode()).hexdigest()[:8]
    current = _describe_endpoint(sm, p.endpoint)
    if current is None:
        return _first_model(p, conf, run_id, evaluation, trained, sm, suffix)
    if current.get("EndpointStatus") != "InService":
        _wait_in_service(sm, p.endpoint)  # an endpoint being updated cannot be updated again
        current = _describe_endpoint(sm, p.endpoint)
    weights = {v["VariantName"]: float(v.get("CurrentWeight", 0.0)) for v in current["ProductionVariants"]}
    config = _sagemaker(f"describe endpoint config {current['EndpointConfigName']!r}", "nothing was deployed",
                        sm.describe_endpoint_config, EndpointConfigName=current["EndpointConfigName"])
    variants = config["ProductionVariants"]
    stable = max(weights, key=lambda v: (weights[v], v))
    stable_entry = next(v for v in variants if v["VariantName"] == stable)
    instance_type = p.instance_type or stable_entry.get("InstanceType") or DEFAULT_INSTANCE_TYPE
    model_name = f"{_short(p.endpoint, 40)}-{suffix}"
    mine = next((v["VariantName"] for v in variants if v.get("ModelName") == model_name), None)
    if mine is not None:  # a retry after the endpoint was updated: the candidate is already in place
        stable = max((v for v in weights if v != mine), key=lambda v: (weights[v], v))
        arn = register_package(sm, p, run_id, evaluation, trained, instance_type)
        return {"endpoint": p.endpoint, "stable_variant": stable, "candidate_variant": mine,
                "model_package_arn": arn}
    candidate = conf.get("candidate_variant") or next_variant(list(weights), stable, run_id)
    if candidate in weights:
        raise AirflowFailException(f"endpoint {p.endpoint} already has a variant named {candidate}; "
                                   "name another with candidate_variant=NAME")
    arn = register_package(sm, p, run_id, evaluation, trained, instance_type)
    role = p.execution_role
    if not role:
        stable_model = _sagemaker(f"describe model {stable_entry['ModelName']!r}", "nothing was deployed",
                                  sm.describe_model, ModelName=stable_entry["ModelName"])
        role = stable_model.get("ExecutionRoleArn")
    _ensure_model(sm, model_name, p, trained, role)
    new_variants = [{k: v for k, v in entry.items() if k != "InitialVariantWeight"}
                    | {"InitialVariantWeight": weights.get(entry["VariantName"], 0.0)} for entry in variants]
    new_variants.append({"VariantName": candidate, "ModelName": model_name, "InstanceType": instance_type,
                         "InitialInstanceCount": int(stable_entry.get("InitialInstanceCount") or 1),
                         "InitialVariantWeight": 0.0})
    config_name = f"{_short(p.endpoint, 40)}-{_short(candidate, 12)}-{suffix}"
    _ensure_config(sm, config_name, new_variants, {k: config[k] for k in _CONFIG_KEEP if config.get(k)})
    _sagemaker(f"update endpoint {p.endpoint!r} to config {config_name!r}",
               f"the candidate {candidate} is not on the endpoint", sm.update_endpoint,
               EndpointName=p.endpoint, EndpointConfigName=config_name)
    _wait_in_service(sm, p.endpoint)
    return {"endpoint": p.endpoint, "stable_variant": stable, "candidate_variant": candidate,
            "model_package_arn": arn}


def _first_model(p: Pipeline, conf: dict, run_id: str, evaluation: dict, trained: dict, sm, suffix: str) -> dict:
    """No endpoint yet: create it with the candidate alone at weight 1, and approve its package (it serves)."""
    candidate = conf.get("candidate_variant") or FIRST_VARIANT
    instance_type = p.instance_type or DEFAULT_INSTANCE_TYPE
    arn = register_package(sm, p, run_id, evaluation, trained, instance_type)
    model_name = f"{_short(p.endpoint, 40)}-{suffix}"
    _ensure_model(sm, model_name, p, trained, p.execution_role)
    config_name = f"{_short(p.endpoint, 40)}-{_short(candidate, 12)}-{suffix}"
    _ensure_config(sm, config_name, [{"VariantName": candidate, "ModelName": model_name,
                                      "InstanceType": instance_type, "InitialInstanceCount": 1,
                                      "InitialVariantWeight": 1.0}], {})
    if _describe_endpoint(sm, p.endpoint) is None:
        _sagemaker(f"create endpoint {p.endpoint!r}", "the first model is not serving", sm.create_endpoint,
                   EndpointName=p.endpoint, EndpointConfigName=config_name)
    _wait_in_service(sm, p.endpoint)
    _sagemaker(f"approve model package {arn}", "the endpoint serves it, but the Model Registry still says "
               "PendingManualApproval", sm.update_model_package, ModelPackageArn=arn,
               ModelApprovalStatus="Approved",
               ApprovalDescription=f"first model of endpoint {p.endpoint}: the endpoint was created with it alone "
                                   f"(Airflow run {run_id})"[:1000])
    return {"endpoint": p.endpoint, "stable_variant": candidate, "candidate_variant": candidate,
            "model_package_arn": arn, "created_endpoint": True}


# ---------------------------------------------------------------- Airflow

def _fail_on_definition(fn: Callable) -> Callable:
    """A broken module fails the task at once (no retry can fix it), with the message that says why."""
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DefinitionError as exc:
            raise AirflowFailException(str(exc)) from exc
    return run


def _context() -> tuple[dict, str]:
    ctx = get_current_context()
    return dict(ctx["dag_run"].conf or {}), ctx["dag_run"].run_id


def _aws_overrides() -> dict:
    from airflow.sdk import Connection

    try:
        conn = Connection.get(AWS_CONNECTION)
    except Exception:  # not defined: boto3's own settings
        return {}
    return connection_overrides(conn)


def build_dag(p: Pipeline):
    @dag(
        dag_id=p.dag_id,
        schedule=p.schedule,
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,  # two deploys racing on one endpoint would leave it in an unknown state
        default_args={"retries": 1, "retry_delay": timedelta(minutes=2)},
        tags=["modelbot", "modelbot-pipeline"],
        doc_md=f"modelbot pipeline of **{p.model}**: `{p.module}`'s preprocess, train and predict; "
               f"metric `{p.metric}` ({p.direction}); endpoint `{p.endpoint}`; artifacts under "
               f"`{p.artifacts.rstrip('/')}/{p.dag_id}/<run_id>/`.",
    )
    def pipeline():
        @task
        def preprocess() -> dict:
            conf, run_id = _context()
            s3 = aws_client("s3", p.region, _aws_overrides())
            return _fail_on_definition(step_preprocess)(p, conf, run_id, S3Artifacts(s3))

        @task
        def train(data: dict) -> dict:
            conf, run_id = _context()
            s3 = aws_client("s3", p.region, _aws_overrides())
            return _fail_on_definition(step_train)(p, conf, run_id, data, S3Artifacts(s3))

        @task
        def evaluate(data: dict, trained: dict) -> dict:
            _, run_id = _context()
            overrides = _aws_overrides()
            artifacts = S3Artifacts(aws_client("s3", p.region, overrides))
            sm = aws_client("sagemaker", p.region, overrides)
            return _fail_on_definition(step_evaluate)(p, run_id, data, trained, artifacts,
                                                      production_loader(sm, artifacts, p.group))

        @task
        def deploy(evaluation: dict, trained: dict) -> dict:
            conf, run_id = _context()
            sm = aws_client("sagemaker", p.region, _aws_overrides())
            return _fail_on_definition(step_deploy)(p, conf, run_id, evaluation, trained, sm)

        data = preprocess()
        trained = train(data)
        evaluation = evaluate(data, trained)
        deploy(evaluation, trained)

    return pipeline()


if dag is not None and __name__ != "__main__":
    for _p in load_pipelines(models_file()):
        globals()[_p.dag_id] = build_dag(_p)
