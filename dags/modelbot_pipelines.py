"""modelbot pipelines: one Airflow DAG per model whose models-file entry has a `[models.X.pipeline]` section.

Drop this file into Airflow's DAGs folder with its three companions, modelbot_contract.py (the model module's
contract), modelbot_schemas.py (request and response schemas) and modelbot_sagemaker.py (S3, the Model Registry,
the endpoint). It reads modelbot's models file (MODELS_FILE, else `models.toml` beside this file) and builds,
for each such model, the DAG named by its `dag_id`:

    preprocess -> train -> evaluate -> deploy

following modelbot's XCom contract (docs/retraining.md, "The XCom contract"). The data scientist writes only a module
(`pipeline.module`, importable on the workers, e.g. a file next to this one): preprocess, train, predict,
REQUEST_SCHEMA and RESPONSE_SCHEMA (modelbot_contract.py says exactly what each must be).

- preprocess checks the module (functions, schemas) and every validation row against REQUEST_SCHEMA, then
  writes the datasets under `<artifacts>/<dag_id>/<run_id>/`; train writes the pickled model and model.tar.gz.
- evaluate scores the candidate and the production model (the newest Approved package of the Model Registry
  group named after the model, only ever loaded from the model's own artifacts) on the same validation data,
  checks each candidate prediction against RESPONSE_SCHEMA, compares the candidate's REQUEST_SCHEMA with the one
  production's package carries, writes diagnostics.csv, schemas.json and evaluation.json, and decides `promote`
  from `direction` and `min_improvement`; a request schema that would refuse requests production accepts is
  not deployed unless the run conf says `allow_breaking_schema=true`. Its XCom adds `schema` (the comparison).
- deploy (skipped unless promoting) registers the candidate as a model package (PendingManualApproval, with the
  evaluation as its metrics and its schemas' location), creates the SageMaker Model, and moves the endpoint to a
  new config that keeps every current variant, adds the candidate at weight 0 under a variant name the endpoint
  never had, and captures requests and predictions (DataCaptureConfig). An endpoint whose traffic is split (a
  rollout in progress) is refused. An endpoint that does not exist yet is created with the candidate alone (a
  first model: nothing to roll out against, so its package is approved at once). No endpoint is ever deleted.

A task that fails pushes its reason as the XCom `modelbot_failure`, which modelbot shows in the run's thread.

Models file: a model entry that cannot build a pipeline (a missing field, a shared endpoint or dag_id) does not
break the other models' DAGs: its DAG is replaced by one whose only task fails at once with the reason. An
entry whose dag_id Airflow would refuse builds nothing (it is logged), as it cannot be named in Airflow.

Workers need only Airflow, boto3, pandas and numpy (jsonschema comes with Airflow); these files do not import
modelbot. AWS settings are boto3's (environment, instance role); an Airflow connection `aws_default`, when
defined, adds its keys (login/password), `region_name`, `endpoint_url` and `service_config.<service>.endpoint_url`
from its extra.

Run conf (from `/model retrain <model> key=value ...`, values are strings) is handed to preprocess and train as
is; `candidate_variant=NAME` names the new variant (default: the highest variant number the endpoint ever had
+ 1, e.g. v42); `allow_breaking_schema=true` deploys a request schema that refuses what production accepts.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import re
import sys
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

# The companions sit beside this file; Airflow puts the DAGs folder on sys.path, a subfolder it does not.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

try:
    import modelbot_schemas as schemas
    from modelbot_contract import (  # noqa: F401  (re-exported: `modelbot pipeline check` and tests use them)
        CLASSIFICATION, FUNCTIONS, HIGHER_IS_BETTER, REGRESSION, Contract, DefinitionError, Unretryable,
        all_metrics, call_predict, call_train, check_frames, check_requests, decide, features_of, load_contract,
        metric_value, model_from_tarball, model_tarball,
    )
    from modelbot_sagemaker import (  # noqa: F401
        CONFIG_KEEP, DEFAULT_INSTANCE_TYPE, FIRST_VARIANT, MemoryArtifacts, Production, S3Artifacts, aws_client, capture_config,
        connection_overrides, describe_endpoint, ensure_config, ensure_model, inside, newest_approved, next_variant,
        production_loader, refuse_split, register_package, sagemaker_call, split_s3, store_schemas,
        variant_history, wait_in_service,
    )
except ModuleNotFoundError as exc:  # the one message an operator needs when a companion was not copied
    if exc.name in ("modelbot_schemas", "modelbot_contract", "modelbot_sagemaker"):
        raise ImportError(f"{exc.name}.py is missing beside {__file__}: copy all four dags/modelbot_*.py files "
                          "into the DAGs folder") from exc
    raise

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

AWS_CONNECTION = "aws_default"
FAILURE_KEY = "modelbot_failure"  # XCom of a failed task: why, for the run's thread
REFUSED_TASK = "check_models_file"
# Airflow's own rule for a dag_id (airflow.utils.helpers.validate_key); bot/registry.py keeps the same one.
DAG_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


class PipelineConfigError(Exception):
    """The models file cannot build a pipeline; names the file, the model and the field."""


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
    capture_percent: int = 100
    capture_uri: str | None = None
    capture_set: frozenset = frozenset()  # which capture fields the models file sets (they override a kept config)

    @property
    def group(self) -> str:
        """The Model Registry group: named after the model."""
        return self.model

    @property
    def capture_destination(self) -> str:
        """Where SageMaker writes captured requests and predictions: capture_uri, else <artifacts>/capture."""
        return self.capture_uri or self.artifacts.rstrip("/") + "/capture"

    def run_prefix(self, run_id: str) -> str:
        return f"{self.artifacts.rstrip('/')}/{self.dag_id}/{run_id}"


@dataclass(frozen=True)
class Refused:
    """Models-file entries that build no pipeline, and why; `dag_id` is the one a stand-in DAG may take."""

    models: tuple[str, ...]
    problems: tuple[str, ...]
    dag_id: str | None = None

    def message(self) -> str:
        return "\n".join(self.problems)


_PIPELINE_FIELDS = {"module", "label", "image", "artifacts", "schedule", "min_improvement", "instance_type",
                    "execution_role", "capture_percent", "capture_uri"}
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_S3 = re.compile(r"^s3://[^/]+")


def models_file() -> Path:
    explicit = os.environ.get("MODELS_FILE")
    return Path(explicit) if explicit else Path(__file__).resolve().parent / "models.toml"


def _section_problems(spec: dict, section: dict) -> list[tuple[str, str]]:
    """(field, why) for one model with a pipeline section: only what the DAG uses; modelbot checks the rest."""
    problems = [(f"pipeline.{key}", f"unknown field; known: {', '.join(sorted(_PIPELINE_FIELDS))}")
                for key in sorted(set(section) - _PIPELINE_FIELDS)]
    for key in ("dag_id", "endpoint", "metric"):
        if not isinstance(spec.get(key), str) or not spec.get(key):
            problems.append((key, "is required for a model with a pipeline"))
    dag_id = spec.get("dag_id")
    if isinstance(dag_id, str) and dag_id and not DAG_ID.match(dag_id):
        problems.append(("dag_id", f"{dag_id!r} is not a valid Airflow dag_id: at most 250 letters, digits, '_', "
                                   "'-' and '.'"))
    for key in ("module", "label", "image", "artifacts"):
        if not isinstance(section.get(key), str) or not section.get(key):
            problems.append((f"pipeline.{key}", "is required"))
    metric, direction = spec.get("metric"), spec.get("direction", "maximize")
    if isinstance(metric, str) and metric and metric not in HIGHER_IS_BETTER:
        problems.append(("metric", f"{metric!r} is not a metric the pipeline computes ({', '.join(HIGHER_IS_BETTER)})"))
    if direction not in ("maximize", "minimize"):
        problems.append(("direction", "must be 'maximize' or 'minimize'"))
    module = section.get("module")
    if isinstance(module, str) and module and not _MODULE_NAME.match(module):
        problems.append(("pipeline.module", f"{module!r} is not an importable module name (e.g. 'churn_model')"))
    for key in ("artifacts", "capture_uri"):
        value = section.get(key)
        if isinstance(value, str) and value and not _S3.match(value):
            problems.append((f"pipeline.{key}", f"{value!r} is not an S3 location (s3://bucket/prefix)"))
    if "capture_uri" in section and not isinstance(section["capture_uri"], str):
        problems.append(("pipeline.capture_uri", "must be an S3 location (s3://bucket/prefix)"))
    improvement = section.get("min_improvement", 0.0)
    if isinstance(improvement, bool) or not isinstance(improvement, (int, float)) or improvement < 0:
        problems.append(("pipeline.min_improvement", "must be a number, zero or more"))
    percent = section.get("capture_percent", 100)
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        problems.append(("pipeline.capture_percent", "must be a whole percent from 0 to 100"))
    for key in ("schedule", "instance_type", "execution_role"):
        if key in section and (not isinstance(section[key], str) or not section[key]):
            problems.append((f"pipeline.{key}", "must be a non-empty string"))
    return problems


def _shared(models: dict) -> list[tuple[str, str, str, str]]:
    """(field, value, first model, second model) for every endpoint or dag_id two models share (bot/registry.py
    refuses the same: their rollouts would move each other's weights, one's DAG would deploy onto the other's
    endpoint)."""
    found = []
    for fld in ("endpoint", "dag_id"):
        seen: dict[str, str] = {}
        for name, spec in models.items():
            value = spec.get(fld) if isinstance(spec, dict) else None
            if not isinstance(value, str) or not value:
                continue
            if value in seen:
                found.append((fld, value, seen[value], name))
            else:
                seen[value] = name
    return found


def read_models_file(path: str | Path) -> tuple[list[Pipeline], list[Refused]]:
    """Every model with a pipeline section: the pipelines it builds, and the entries it refuses with why.

    A problem in one entry refuses that entry only; a file that cannot be read at all raises PipelineConfigError.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineConfigError(f"{path}: models file not found; set MODELS_FILE on the Airflow workers or put "
                                  "models.toml next to modelbot_pipelines.py") from None
    except tomllib.TOMLDecodeError as exc:
        raise PipelineConfigError(f"{path}: not valid TOML: {exc}") from None
    defaults = raw.get("defaults") or {}
    models = raw.get("models") or {}
    if not isinstance(models, dict):
        raise PipelineConfigError(f"{path}: [models] must be a table of models")
    problems: dict[str, list[str]] = {}
    for fld, value, first, second in _shared(models):
        for name in (first, second):
            problems.setdefault(name, []).append(
                f"{path}: models {first!r} and {second!r}, field {fld!r}: both name {value!r}; two models may not "
                f"share {'an' if fld == 'endpoint' else 'a'} {fld}")
    found: list[Pipeline] = []
    refused_names: list[str] = []
    for name, spec in sorted(models.items()):
        section = spec.get("pipeline") if isinstance(spec, dict) else None
        if section is None:
            continue
        if not isinstance(section, dict):
            problems.setdefault(name, []).append(
                f"{path}: model {name!r}, field 'pipeline': must be a table ([models.X.pipeline])")
        else:
            problems.setdefault(name, []).extend(f"{path}: model {name!r}, field {fld!r}: {why}"
                                                 for fld, why in _section_problems(spec, section))
        if problems[name]:
            refused_names.append(name)
            continue
        found.append(Pipeline(
            model=name, dag_id=spec["dag_id"], endpoint=spec["endpoint"], metric=spec["metric"],
            direction=spec.get("direction", "maximize"),
            region=spec.get("region") or defaults.get("region") or "us-east-1", module=section["module"],
            label=section["label"], image=section["image"], artifacts=section["artifacts"],
            schedule=section.get("schedule"), min_improvement=float(section.get("min_improvement", 0.0)),
            instance_type=section.get("instance_type"), execution_role=section.get("execution_role"),
            capture_percent=int(section.get("capture_percent", 100)), capture_uri=section.get("capture_uri"),
            capture_set=frozenset(k for k in ("capture_percent", "capture_uri") if k in section),
        ))
    return found, _refusals(models, refused_names, problems)


def _refusals(models: dict, refused_names: list[str], problems: dict[str, list[str]]) -> list[Refused]:
    """One Refused per dag_id the refused entries name (a shared dag_id: one, naming both models). A stand-in DAG
    may take the dag_id only when it is valid and no model outside the refused ones names it."""
    by_dag: dict[str | None, list[str]] = {}
    for name in refused_names:
        dag_id = models[name].get("dag_id") if isinstance(models[name], dict) else None
        key = dag_id if isinstance(dag_id, str) and DAG_ID.match(dag_id) else None
        by_dag.setdefault(key, []).append(name)
    out = []
    for dag_id, names in by_dag.items():
        others = [m for m, spec in models.items() if m not in names and isinstance(spec, dict)
                  and spec.get("dag_id") == dag_id]
        lines = tuple(dict.fromkeys(line for name in names for line in problems[name]))
        if dag_id is None or others:
            out.extend(Refused(models=(name,), problems=tuple(problems[name])) for name in names)
        else:
            out.append(Refused(models=tuple(names), problems=lines, dag_id=dag_id))
    return out


def load_pipelines(path: str | Path) -> list[Pipeline]:
    """Every model with a pipeline section, or PipelineConfigError naming each refused entry's problems."""
    found, refused = read_models_file(path)
    if refused:
        raise PipelineConfigError("\n".join(dict.fromkeys(p for r in refused for p in r.problems)))
    return found


def conf_flag(conf: dict, key: str) -> bool:
    """A true/false run-conf value (conf values from Slack are strings)."""
    value = conf.get(key, False)
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise Unretryable(f"run conf {key}={value!r}: say {key}=true or {key}=false")


# ---------------------------------------------------------------- the steps (no Airflow in here)

def step_preprocess(p: Pipeline, conf: dict, run_id: str, artifacts) -> dict:
    import pandas as pd  # noqa: F401  (the frames are pickled with it)

    contract = load_contract(p.module)  # all of it, so a missing predict or schema fails before hours of training
    frames = check_frames(contract.preprocess(dict(conf)), p.label, p.module)
    features = features_of(contract, frames["validation"], p.label, f"{p.module}.preprocess(conf)['validation']")
    checked = check_requests(contract, features)
    prefix = p.run_prefix(run_id)
    uris = {}
    for part, frame in frames.items():
        uris[f"{part}_uri"] = artifacts.put(f"{prefix}/{part}.pkl", pickle.dumps(frame, pickle.HIGHEST_PROTOCOL))
    return {**uris, "rows": {part: len(frame) for part, frame in frames.items()},
            "features": [str(c) for c in frames["train"].columns if c != p.label], "requests_checked": checked}


def step_train(p: Pipeline, conf: dict, run_id: str, data: dict, artifacts) -> dict:
    contract = load_contract(p.module)
    frame = pickle.loads(artifacts.get(data["train_uri"]))
    _, blob = call_train(contract.train, frame, conf, p.module)
    prefix = p.run_prefix(run_id)
    return {"model_uri": artifacts.put(f"{prefix}/model.pkl", blob),
            "model_data_url": artifacts.put(f"{prefix}/model.tar.gz", model_tarball(blob))}


LISTED_CHANGES = 40  # per kind in the XCom; the count says how many there were


def schema_report(contract: Contract, production: Production | None, *, allow: bool, uri: str,
                  requests: int, predictions: int) -> dict:
    """The evaluate XCom's `schema`: the candidate's request schema against production's, field by field."""
    report = {"uri": uri, "requests_checked": requests, "predictions_checked": predictions,
              "production_package": production.arn if production else None, "compared": False,
              "breaking": [], "compatible": [], "breaking_count": 0, "compatible_count": 0,
              "allowed": allow, "blocked": False, "note": None}
    if production is None:
        report["note"] = "nothing in production to compare the request schema with"
        return report
    if production.schemas is None:
        report["note"] = production.schemas_note
        return report
    try:
        breaking, compatible = schemas.compare(production.schemas["request"], contract.request_schema)
    except Exception as exc:  # production's schema from an older modelbot, say: say so, do not fail the run
        log.warning("request schemas not compared: %s", exc)
        report["note"] = (f"production's request schema ({production.arn}) could not be compared "
                          f"({type(exc).__name__}: {exc})")
        return report
    report.update(compared=True, breaking=[c.as_dict() for c in breaking[:LISTED_CHANGES]],
                  compatible=[c.as_dict() for c in compatible[:LISTED_CHANGES]], breaking_count=len(breaking),
                  compatible_count=len(compatible), blocked=bool(breaking) and not allow)
    return report


def step_evaluate(p: Pipeline, run_id: str, data: dict, trained: dict, artifacts,
                  production: Callable[[], Production | None], conf: dict | None = None) -> dict:
    """The XCom contract's evaluation, plus `schema`. `production()` gives the production model or None."""
    allow = conf_flag(conf or {}, "allow_breaking_schema")
    contract = load_contract(p.module)
    validation = pickle.loads(artifacts.get(data["validation_uri"]))
    features = features_of(contract, validation, p.label, f"{p.module}.preprocess(conf)['validation']")
    y_true = validation[p.label].to_numpy()
    labels = [f"validation row {i} (index {index!r})" for i, index in enumerate(features.index)]
    candidate_model = pickle.loads(artifacts.get(trained["model_uri"]))
    cand_scores = call_predict(contract.predict, candidate_model, features, p.module, "candidate",
                               response_schema=contract.response_schema, row_labels=labels)
    try:
        candidate = metric_value(p.metric, y_true, cand_scores)
    except ValueError as exc:
        raise DefinitionError(f"{p.metric} of the candidate on the validation data: {exc}") from exc
    found = production()
    prod_value, prod_all = None, None
    if found is not None:
        prod_scores = call_predict(contract.predict, found.model, features, p.module, f"production ({found.arn})")
        prod_value = metric_value(p.metric, y_true, prod_scores)
        prod_all = all_metrics(p.metric, y_true, prod_scores)
    prefix = p.run_prefix(run_id)
    schema = schema_report(contract, found, allow=allow, requests=len(features), predictions=len(cand_scores),
                           uri=store_schemas(artifacts, prefix, p.artifacts, contract.schemas_document()))
    better = decide(p.direction, candidate, prod_value, p.min_improvement)
    promote = better and not schema["blocked"]
    csv = io.StringIO()
    csv.write("y_true,y_pred\n")
    for t, s in zip(y_true.tolist(), cand_scores.tolist()):
        csv.write(f"{t},{round(s, 6)}\n")
    diagnostics = artifacts.put(f"{prefix}/diagnostics.csv", csv.getvalue().encode())
    report = {"metric": p.metric, "direction": p.direction, "min_improvement": p.min_improvement,
              "validation_rows": len(validation), "better": better, "promote": promote,
              "candidate": all_metrics(p.metric, y_true, cand_scores),
              "production": prod_all, "production_model_package": found.arn if found else None, "schema": schema}
    artifacts.put(f"{prefix}/evaluation.json", json.dumps(report, indent=2).encode())
    return {"metric": p.metric, "candidate": round(candidate, 6),
            "production": None if prod_value is None else round(prod_value, 6), "promote": promote,
            "diagnostics_uri": diagnostics, "schema": schema}


def _candidate_name(p: Pipeline, conf: dict, history: dict[str, tuple[str, str | None]], model_name: str,
                    stable: str | None, run_id: str) -> str:
    """The candidate's variant name: this run's from an earlier try, the one the conf names (never one the
    endpoint had), or the next of the series."""
    earlier = next((name for name, (_, model) in history.items() if model == model_name), None)
    wanted = conf.get("candidate_variant")
    if wanted:
        where, model = history.get(wanted, (None, None))
        if where is not None and model != model_name:
            raise Unretryable(f"endpoint {p.endpoint} had a variant named {wanted} before ({where}); a name is never "
                              "used twice, as CloudWatch's per-variant history would mix two models: name another "
                              "with candidate_variant=NAME, or leave it out")
        return wanted
    if earlier:
        return earlier
    if stable is None:
        return FIRST_VARIANT if FIRST_VARIANT not in history else next_variant(set(history), FIRST_VARIANT, run_id)
    return next_variant(set(history), stable, run_id)


def step_deploy(p: Pipeline, conf: dict, run_id: str, evaluation: dict, trained: dict, sm,
                cloudwatch=None) -> dict:
    """Registers the package, creates the model, puts it on the endpoint at weight 0 (or creates the endpoint)."""
    schema = evaluation.get("schema") or {}
    if schema.get("blocked"):
        raise AirflowSkipException(
            f"not deployed: the candidate's REQUEST_SCHEMA would refuse requests production accepts "
            f"({schema.get('breaking_count', 0)} breaking changes, listed in evaluate's result); retrain with "
            "allow_breaking_schema=true to deploy it anyway")
    if not evaluation.get("promote"):
        raise AirflowSkipException("the candidate is not better than production; nothing to deploy")
    suffix = hashlib.sha1(f"{p.dag_id}/{run_id}".encode()).hexdigest()[:8]
    model_name = f"{p.endpoint[:40]}-{suffix}"
    current = describe_endpoint(sm, p.endpoint)
    history = variant_history(sm, cloudwatch, p.endpoint)
    if current is not None and current.get("EndpointStatus") != "InService":
        wait_in_service(sm, p.endpoint)  # an endpoint being updated cannot be updated again
        current = describe_endpoint(sm, p.endpoint)
    if current is None:
        return _first_model(p, conf, run_id, evaluation, trained, sm, model_name, history)
    weights = {v["VariantName"]: float(v.get("CurrentWeight", 0.0)) for v in current["ProductionVariants"]}
    config = sagemaker_call(f"describe endpoint config {current['EndpointConfigName']!r}", "nothing was deployed",
                            sm.describe_endpoint_config, EndpointConfigName=current["EndpointConfigName"])
    variants = config["ProductionVariants"]
    mine = next((v["VariantName"] for v in variants if v.get("ModelName") == model_name), None)
    if mine is not None and len(weights) == 1:  # an earlier try created the endpoint with this candidate
        return _first_model(p, conf, run_id, evaluation, trained, sm, model_name, history)
    stable = max(weights, key=lambda v: (weights[v], v))
    stable_entry = next(v for v in variants if v["VariantName"] == stable)
    instance_type = p.instance_type or stable_entry.get("InstanceType") or DEFAULT_INSTANCE_TYPE
    if mine is not None:  # a retry after the endpoint was updated: the candidate is already in place
        stable = max((v for v in weights if v != mine), key=lambda v: (weights[v], v))
        arn = register_package(sm, p, run_id, evaluation, trained, instance_type)
        return {"endpoint": p.endpoint, "stable_variant": stable, "candidate_variant": mine,
                "model_package_arn": arn}
    refuse_split(p.endpoint, weights)
    candidate = _candidate_name(p, conf, history, model_name, stable, run_id)
    if candidate in weights:
        raise Unretryable(f"endpoint {p.endpoint} already has a variant named {candidate}; name another with "
                          "candidate_variant=NAME")
    arn = register_package(sm, p, run_id, evaluation, trained, instance_type)
    role = p.execution_role
    if not role:
        stable_model = sagemaker_call(f"describe model {stable_entry['ModelName']!r}", "nothing was deployed",
                                      sm.describe_model, ModelName=stable_entry["ModelName"])
        role = stable_model.get("ExecutionRoleArn")
    ensure_model(sm, model_name, p, trained, role)
    # UpdateEndpoint gives each variant its config's instance count: the variants kept carry the count they run
    # now, so a variant Application Auto Scaling grew does not shrink back under its traffic.
    running = {v["VariantName"]: v.get("CurrentInstanceCount") for v in current["ProductionVariants"]}
    new_variants = [{k: v for k, v in entry.items() if k != "InitialVariantWeight"}
                    | {"InitialVariantWeight": weights.get(entry["VariantName"], 0.0)}
                    | ({"InitialInstanceCount": int(running[entry["VariantName"]])}
                       if "InitialInstanceCount" in entry and running.get(entry["VariantName"]) else {})
                    for entry in variants]
    new_variants.append({"VariantName": candidate, "ModelName": model_name, "InstanceType": instance_type,
                         "InitialInstanceCount": int(stable_entry.get("InitialInstanceCount") or 1),
                         "InitialVariantWeight": 0.0})
    extra = {k: config[k] for k in CONFIG_KEEP if config.get(k)}
    capture = capture_config(p, config.get("DataCaptureConfig"))
    if capture:
        extra["DataCaptureConfig"] = capture
    config_name = _config_name(p, candidate, run_id, new_variants, extra)
    ensure_config(sm, config_name, new_variants, extra)
    sagemaker_call(f"update endpoint {p.endpoint!r} to config {config_name!r}",
                   f"the candidate {candidate} is not on the endpoint", sm.update_endpoint,
                   EndpointName=p.endpoint, EndpointConfigName=config_name)
    wait_in_service(sm, p.endpoint)
    return {"endpoint": p.endpoint, "stable_variant": stable, "candidate_variant": candidate,
            "model_package_arn": arn}


def _config_name(p: Pipeline, candidate: str, run_id: str, variants: list[dict], extra: dict) -> str:
    """Per run and per content: a retry finds the config it made, unless the endpoint changed meanwhile."""
    content = json.dumps([p.dag_id, run_id, variants, extra], sort_keys=True, default=str)
    short = re.sub(r"[^A-Za-z0-9-]", "-", candidate)[:12].strip("-")
    return f"{p.endpoint[:40]}-{short}-{hashlib.sha1(content.encode()).hexdigest()[:8]}"


def _first_model(p: Pipeline, conf: dict, run_id: str, evaluation: dict, trained: dict, sm, model_name: str,
                 history: dict) -> dict:
    """No endpoint yet: create it with the candidate alone at weight 1, and approve its package (it serves)."""
    candidate = _candidate_name(p, conf, history, model_name, None, run_id)
    instance_type = p.instance_type or DEFAULT_INSTANCE_TYPE
    arn = register_package(sm, p, run_id, evaluation, trained, instance_type)
    ensure_model(sm, model_name, p, trained, p.execution_role)
    variants = [{"VariantName": candidate, "ModelName": model_name, "InstanceType": instance_type,
                 "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}]
    capture = capture_config(p, None)
    extra = {"DataCaptureConfig": capture} if capture else {}
    config_name = _config_name(p, candidate, run_id, variants, extra)
    ensure_config(sm, config_name, variants, extra)
    if describe_endpoint(sm, p.endpoint) is None:
        # The tag lets AWS Billing split costs by model (activate it as a cost allocation tag: docs/cost.md).
        sagemaker_call(f"create endpoint {p.endpoint!r}", "the first model is not serving", sm.create_endpoint,
                       EndpointName=p.endpoint, EndpointConfigName=config_name,
                       Tags=[{"Key": "modelbot:model", "Value": p.model}])
    wait_in_service(sm, p.endpoint)
    sagemaker_call(f"approve model package {arn}", "the endpoint serves it, but the Model Registry still says "
                   "PendingManualApproval", sm.update_model_package, ModelPackageArn=arn,
                   ModelApprovalStatus="Approved",
                   ApprovalDescription=f"first model of endpoint {p.endpoint}: the endpoint was created with it alone "
                                       f"(Airflow run {run_id})"[:1000])
    return {"endpoint": p.endpoint, "stable_variant": candidate, "candidate_variant": candidate,
            "model_package_arn": arn, "created_endpoint": True}


# ---------------------------------------------------------------- Airflow

def _tell(message: str) -> None:
    """The failure's reason as the task's XCom FAILURE_KEY: modelbot shows it in the run's thread."""
    try:
        get_current_context()["ti"].xcom_push(key=FAILURE_KEY, value=message[:3000])
    except Exception as exc:  # the task fails either way; only the thread's detail is lost
        log.warning("the failure reason was not pushed as XCom %s: %s", FAILURE_KEY, exc)


def _run_step(fn: Callable, *args, **kwargs):
    """A step, in a task: what no retry can fix fails the task at once; every failure tells modelbot why."""
    try:
        return fn(*args, **kwargs)
    except Unretryable as exc:
        _tell(str(exc))
        raise AirflowFailException(str(exc)) from exc
    except AirflowSkipException:
        raise
    except Exception as exc:
        _tell(f"{type(exc).__name__}: {exc}")
        raise


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
            return _run_step(step_preprocess, p, conf, run_id, S3Artifacts(s3))

        @task
        def train(data: dict) -> dict:
            conf, run_id = _context()
            s3 = aws_client("s3", p.region, _aws_overrides())
            return _run_step(step_train, p, conf, run_id, data, S3Artifacts(s3))

        @task
        def evaluate(data: dict, trained: dict) -> dict:
            conf, run_id = _context()
            overrides = _aws_overrides()
            artifacts = S3Artifacts(aws_client("s3", p.region, overrides))
            sm = aws_client("sagemaker", p.region, overrides)
            return _run_step(step_evaluate, p, run_id, data, trained, artifacts,
                             production_loader(sm, artifacts, p.group, p.artifacts), conf)

        @task
        def deploy(evaluation: dict, trained: dict) -> dict:
            conf, run_id = _context()
            overrides = _aws_overrides()
            return _run_step(step_deploy, p, conf, run_id, evaluation, trained,
                             aws_client("sagemaker", p.region, overrides),
                             aws_client("cloudwatch", p.region, overrides))

        data = preprocess()
        trained = train(data)
        evaluation = evaluate(data, trained)
        deploy(evaluation, trained)

    return pipeline()


def build_refused_dag(refused: Refused):
    """A stand-in for a models-file entry that builds no pipeline: its one task fails at once, saying why, so
    `/model retrain` shows the reason in the run's thread instead of a DAG that does not exist."""
    message = refused.message()

    @dag(
        dag_id=refused.dag_id,
        schedule=None,
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        tags=["modelbot", "modelbot-pipeline", "modelbot-refused"],
        doc_md="**This model's pipeline was not built: its models-file entry is refused.**\n\n" + message,
    )
    def refused_pipeline():
        @task(task_id=REFUSED_TASK, retries=0)
        def check_models_file() -> None:
            _tell(message)
            raise AirflowFailException(message)

        check_models_file()

    return refused_pipeline()


def build_all(path: Path) -> dict[str, Any]:
    """dag_id -> DAG for every pipeline, and a failing stand-in for every refused entry that can be named."""
    pipelines, refused = read_models_file(path)
    built = {p.dag_id: build_dag(p) for p in pipelines}
    for r in refused:
        log.error("modelbot pipelines: %s", r.message())
        if r.dag_id is not None and r.dag_id not in built:
            built[r.dag_id] = build_refused_dag(r)
    return built


if dag is not None and __name__ != "__main__":
    globals().update(build_all(models_file()))
