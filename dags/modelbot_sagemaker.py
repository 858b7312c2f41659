"""AWS for modelbot's generated pipelines (modelbot_pipelines.py imports this file): S3 artifacts, the Model
Registry package, and the endpoint a candidate joins. Plain boto3; nothing of modelbot is imported.

What it guards, because a deploy runs unattended:
- the production model is unpickled only from the model's own Model Registry group and its own artifacts
  prefix (unpickling runs code: a package pointing elsewhere is refused, not loaded);
- a candidate never joins an endpoint whose traffic is split (a rollout in progress): it would be a third
  variant in a split that no rollout judges;
- a variant name is never used twice on an endpoint (CloudWatch keeps per-variant history by name): the next
  name comes from the endpoint's current variants, every endpoint config made for it, and CloudWatch;
- the new endpoint config captures requests and predictions (DataCaptureConfig) and keeps what an existing
  config captured.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import tarfile
from dataclasses import dataclass
from typing import Any, Callable

from modelbot_contract import DefinitionError, Unretryable, model_from_tarball

log = logging.getLogger(__name__)

FIRST_VARIANT = "v1"
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
SCHEMAS_KEY = "modelbot_schemas"  # CustomerMetadataProperties: where the package's schemas.json is
METADATA_VALUE_LIMIT = 256  # CustomerMetadataProperties' value limit
HISTORY_CONFIGS = 1000  # endpoint configs read for variant names, newest first


# ---------------------------------------------------------------- artifacts

def split_s3(uri: str) -> tuple[str, str]:
    match = re.match(r"^s3://([^/]+)/?(.*)$", uri)
    if not match:
        raise ValueError(f"{uri!r} is not an S3 location")
    return match.group(1), match.group(2)


def inside(uri: str, prefix: str) -> bool:
    """True when `uri` is an object under the S3 `prefix` (s3://bucket/churn holds s3://bucket/churn/x, not
    s3://bucket/churn-other/x)."""
    return isinstance(uri, str) and uri.startswith(prefix.rstrip("/") + "/")


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


# ---------------------------------------------------------------- clients and errors

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


def sagemaker_call(what: str, not_done: str, call: Callable, **kwargs):
    """One SageMaker call; a failure names SageMaker, what was asked and what was not done."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        code, message = _client_error(exc)
        raise RuntimeError(f"SageMaker did not {what} ({code}: {message}); {not_done}") from exc


# ---------------------------------------------------------------- the Model Registry

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
    listed = sagemaker_call(f"list the Approved packages of model package group {group!r}",
                            "production could not be evaluated", sm.list_model_packages,
                            ModelPackageGroupName=group, ModelApprovalStatus="Approved", SortBy="CreationTime",
                            SortOrder="Descending", MaxResults=20)["ModelPackageSummaryList"]
    if not listed:
        return None
    newest = max(listed, key=lambda s: (s.get("ModelPackageVersion") or 0, str(s.get("CreationTime"))))
    return sagemaker_call(f"describe model package {newest['ModelPackageArn']}", "production could not be evaluated",
                          sm.describe_model_package, ModelPackageName=newest["ModelPackageArn"])


@dataclass(frozen=True)
class Production:
    """The model in production as its newest Approved package has it."""

    model: Any
    arn: str
    schemas: dict | None = None  # {"request": ..., "response": ...}, when the package carries them
    schemas_note: str | None = None  # why there is nothing to compare the candidate's schemas with


def production_loader(sm, artifacts, group: str, artifacts_prefix: str) -> Callable[[], Production | None]:
    """production() -> the newest Approved package's model and schemas, or None (a first model).

    Only the model's own group, and only model data under its own artifacts prefix: unpickling runs code, so a
    package naming anything else is refused with the reason, never loaded.
    """
    def load() -> Production | None:
        package = newest_approved(sm, group)
        if package is None:
            return None
        arn = package["ModelPackageArn"]
        if package.get("ModelPackageGroupName") not in (None, group):
            raise Unretryable(f"the Model Registry answered package {arn} of group "
                              f"{package.get('ModelPackageGroupName')!r} for group {group!r}; it was not loaded")
        containers = (package.get("InferenceSpecification") or {}).get("Containers") or []
        url = next((c.get("ModelDataUrl") for c in containers if c.get("ModelDataUrl")), None)
        if not url:
            raise DefinitionError(f"the production package {arn} has no ModelDataUrl, so it cannot be evaluated "
                                  "on the validation data; approve a package this pipeline registered")
        if not inside(url, artifacts_prefix):
            raise Unretryable(
                f"the production package {arn} names model data at {url}, outside this model's artifacts "
                f"({artifacts_prefix.rstrip('/')}/); the pipeline unpickles only what it wrote there (unpickling "
                "runs code), so it was not loaded and nothing was deployed. Reject that package in the Model "
                "Registry, or approve one this pipeline registered")
        try:
            model = model_from_tarball(artifacts.get(url))
        except (KeyError, tarfile.TarError, pickle.UnpicklingError, AttributeError, ModuleNotFoundError) as exc:
            raise DefinitionError(f"the production package {arn}: {url} holds no loadable model.pkl "
                                  f"({type(exc).__name__}: {exc})") from exc
        schemas, note = _package_schemas(package, artifacts, artifacts_prefix)
        return Production(model=model, arn=arn, schemas=schemas, schemas_note=note)
    return load


def _package_schemas(package: dict, artifacts, artifacts_prefix: str) -> tuple[dict | None, str | None]:
    arn = package["ModelPackageArn"]
    uri = (package.get("CustomerMetadataProperties") or {}).get(SCHEMAS_KEY)
    if not uri:
        return None, (f"the production package {arn} carries no schemas (registered before modelbot kept them), so "
                      "the candidate's request schema was not compared with production's")
    if not inside(uri, artifacts_prefix):
        return None, (f"the production package {arn} names its schemas at {uri}, outside this model's artifacts; "
                      "they were not read, so the request schemas were not compared")
    try:
        document = json.loads(artifacts.get(uri))
    except (RuntimeError, KeyError, ValueError) as exc:
        return None, f"the production package's schemas ({uri}) could not be read ({exc}); not compared"
    if not isinstance(document, dict) or "request" not in document:
        return None, f"the production package's schemas ({uri}) hold no request schema; not compared"
    return document, None


def store_schemas(artifacts, run_prefix: str, artifacts_prefix: str, document: dict) -> str:
    """schemas.json for the package: under the run's prefix, or content-addressed under the artifacts when that
    URI would not fit CustomerMetadataProperties' 256 characters."""
    body = json.dumps(document, indent=2, sort_keys=True).encode()
    uri = f"{run_prefix}/schemas.json"
    if len(uri) > METADATA_VALUE_LIMIT:
        uri = f"{artifacts_prefix.rstrip('/')}/schemas/{hashlib.sha256(body).hexdigest()}.json"
    return artifacts.put(uri, body)


def _find_registered(sm, group: str, dag_id: str, run_id: str) -> str | None:
    """The package this run registered before (a retried deploy), found by its metadata."""
    listed = sagemaker_call(f"list the packages of model package group {group!r}", "nothing was registered",
                            sm.list_model_packages, ModelPackageGroupName=group, SortBy="CreationTime",
                            SortOrder="Descending", MaxResults=20)["ModelPackageSummaryList"]
    for summary in listed:
        desc = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        meta = desc.get("CustomerMetadataProperties") or {}
        if meta.get("modelbot_dag_id") == dag_id and meta.get("modelbot_run_id") == run_id[:256]:
            return desc["ModelPackageArn"]
    return None


def register_package(sm, p, run_id: str, evaluation: dict, trained: dict, instance_type: str) -> str:
    """The candidate as a package of the model's group, PendingManualApproval: its evaluation as ModelMetrics,
    where its schemas are in CustomerMetadataProperties. A retried deploy finds the one it registered."""
    from botocore.exceptions import ClientError

    try:
        sm.describe_model_package_group(ModelPackageGroupName=p.group)
    except ClientError as exc:
        if not _not_found(exc):
            raise
        sagemaker_call(f"create model package group {p.group!r}", "the candidate was not registered",
                       sm.create_model_package_group, ModelPackageGroupName=p.group,
                       ModelPackageGroupDescription=f"modelbot: versions of the model {p.model}")
    existing = _find_registered(sm, p.group, p.dag_id, run_id)
    if existing:
        return existing
    metadata = {"modelbot_dag_id": p.dag_id, "modelbot_run_id": run_id[:256], "metric": p.metric,
                "candidate": str(evaluation["candidate"]),
                "production": "none" if evaluation["production"] is None else str(evaluation["production"])}
    schemas_uri = (evaluation.get("schema") or {}).get("uri")
    if schemas_uri:
        metadata[SCHEMAS_KEY] = schemas_uri
    answer = sagemaker_call(
        f"register the candidate in model package group {p.group!r}", "nothing was deployed",
        sm.create_model_package, ModelPackageGroupName=p.group,
        ModelPackageDescription=f"{p.dag_id} run {run_id}"[:1024],
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": p.image, "ModelDataUrl": trained["model_data_url"]}],
            "SupportedContentTypes": ["application/json", "text/csv"],
            "SupportedResponseMIMETypes": ["application/json"],
            "SupportedRealtimeInferenceInstanceTypes": [instance_type],
        },
        ModelMetrics={"ModelQuality": {"Statistics": {
            "ContentType": "application/json", "S3Uri": f"{p.run_prefix(run_id)}/evaluation.json"}}},
        CustomerMetadataProperties=metadata,
        ClientToken=hashlib.sha1(f"{p.dag_id}/{run_id}".encode()).hexdigest(),
    )
    return answer["ModelPackageArn"]


# ---------------------------------------------------------------- the endpoint

def describe_endpoint(sm, name: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return sm.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        if _not_found(exc):
            return None
        raise RuntimeError(f"SageMaker did not describe endpoint {name!r}: {_client_error(exc)[1]}; "
                           "nothing was deployed") from exc


def ensure_model(sm, name: str, p, trained: dict, role: str | None) -> None:
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
    sagemaker_call(f"create model {name!r}", "the endpoint was not changed", sm.create_model, ModelName=name,
                   PrimaryContainer={"Image": p.image, "ModelDataUrl": trained["model_data_url"]},
                   ExecutionRoleArn=role)


def ensure_config(sm, name: str, variants: list[dict], extra: dict) -> None:
    from botocore.exceptions import ClientError

    try:
        sm.describe_endpoint_config(EndpointConfigName=name)
        return
    except ClientError as exc:
        if not _not_found(exc):
            raise
    sagemaker_call(f"create endpoint config {name!r}", "the endpoint was not changed", sm.create_endpoint_config,
                   EndpointConfigName=name, ProductionVariants=variants, **extra)


def wait_in_service(sm, endpoint: str) -> None:
    delay = 1 if os.environ.get("AWS_ENDPOINT_URL") else 15  # an emulator answers at once
    try:
        sm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint,
                                                  WaiterConfig={"Delay": delay, "MaxAttempts": 240})
    except Exception as exc:
        raise RuntimeError(f"SageMaker endpoint {endpoint!r} did not reach InService: {exc}") from exc


# Settings of the current endpoint config the new one keeps (DataCaptureConfig is decided by capture_config).
CONFIG_KEEP = ("KmsKeyId", "AsyncInferenceConfig", "ExplainerConfig", "ShadowProductionVariants")


def refuse_split(endpoint: str, weights: dict[str, float]) -> None:
    """A rollout in progress shows as traffic on more than one variant: a candidate added now would be a third
    variant in a split that no rollout judges. Refused; a retry cannot help until the rollout has ended."""
    serving = {name: w for name, w in weights.items() if w > 0}
    if len(serving) < 2:
        return
    total = sum(serving.values())
    split = ", ".join(f"{name} {100 * w / total:.0f}%" for name, w in sorted(serving.items(), key=lambda x: -x[1]))
    raise Unretryable(
        f"endpoint {endpoint} splits its traffic ({split}): a rollout is in progress, and a candidate added now "
        "would be a third variant in a split that no rollout judges. Nothing was deployed. Let the rollout end "
        "(`/model status` shows it; promote or roll it back), then retrain again.")


def capture_config(p, existing: dict | None) -> dict | None:
    """DataCaptureConfig for the deploy's new endpoint config: requests (Input) and predictions (Output).

    An existing config's capture is kept as it is (its KMS key, content types, percent and destination), except
    what the models file sets explicitly (capture_percent, capture_uri). Without one: capture_percent of the
    requests (default 100) to capture_uri (default <artifacts>/capture). capture_percent = 0 turns it off.
    """
    if existing:
        config = json.loads(json.dumps(existing, default=str))  # a copy, free of the answer's odd types
        if "capture_percent" in p.capture_set:
            config["InitialSamplingPercentage"] = p.capture_percent
            config["EnableCapture"] = p.capture_percent > 0
        if "capture_uri" in p.capture_set:
            config["DestinationS3Uri"] = p.capture_destination
        return config
    if p.capture_percent <= 0:
        return None
    return {"EnableCapture": True, "InitialSamplingPercentage": p.capture_percent,
            "DestinationS3Uri": p.capture_destination,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"], "CsvContentTypes": ["text/csv"]}}


# ---------------------------------------------------------------- variant names

def variant_history(sm, cloudwatch, endpoint: str) -> dict[str, tuple[str, str | None]]:
    """Every variant name the endpoint has had: name -> (where it was seen, the SageMaker model it served, when an
    endpoint config says).

    Endpoint configs made for the endpoint carry its name (this pipeline's and modelbot's own); CloudWatch keeps
    per-variant metrics for 15 months, configs deleted by hand included. CloudWatch is best effort: a role
    without cloudwatch:ListMetrics still gets the configs' names."""
    seen: dict[str, tuple[str, str | None]] = {}
    names = []
    paginator = sm.get_paginator("list_endpoint_configs")
    try:
        for page in paginator.paginate(NameContains=endpoint[:40], SortBy="CreationTime", SortOrder="Descending"):
            names.extend(c["EndpointConfigName"] for c in page.get("EndpointConfigs", []))
            if len(names) >= HISTORY_CONFIGS:
                break
    except Exception as exc:
        code, message = _client_error(exc)
        raise RuntimeError(f"SageMaker did not list the endpoint configs of {endpoint!r} ({code}: {message}), so the "
                           "next variant name could not be checked against the names used before; nothing was "
                           "deployed") from exc
    for name in names[:HISTORY_CONFIGS]:
        try:
            config = sm.describe_endpoint_config(EndpointConfigName=name)
        except Exception as exc:  # deleted between the list and now
            log.info("endpoint config %s not read: %s", name, exc)
            continue
        for v in config.get("ProductionVariants", []) + config.get("ShadowProductionVariants", []):
            seen.setdefault(v["VariantName"], (f"endpoint config {name}", v.get("ModelName")))
    if cloudwatch is not None:
        try:
            pages = cloudwatch.get_paginator("list_metrics").paginate(
                Namespace="AWS/SageMaker", MetricName="Invocations",
                Dimensions=[{"Name": "EndpointName", "Value": endpoint}])
            for page in pages:
                for metric in page.get("Metrics", []):
                    dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                    if dims.get("EndpointName") == endpoint and dims.get("VariantName"):
                        seen.setdefault(dims["VariantName"], ("CloudWatch's metrics of the endpoint", None))
        except Exception as exc:
            log.warning("CloudWatch's variant names of %s not read (%s); the endpoint configs' names are used", endpoint,
                        exc)
    return seen


def _short(text: str, n: int) -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", text)[:n].strip("-")


def next_variant(used, stable: str, run_id: str) -> str:
    """The name after the highest of `stable`'s series among every name used (v41, v42 -> v43), never one used
    before. A stable name without a number gets a suffix from the run id."""
    used = set(used)
    match = re.match(r"^(.*?)(\d+)$", stable)
    if not match:
        digest = hashlib.sha1(run_id.encode()).hexdigest()
        for width in range(6, len(digest) + 1):
            name = f"{_short(stable, 40)}-{digest[:width]}"
            if name not in used:
                return name
        raise Unretryable(f"no unused variant name after {stable}: name one with candidate_variant=NAME")
    prefix = match.group(1)
    numbers = [int(m.group(1)) for n in used | {stable} if (m := re.match(rf"^{re.escape(prefix)}(\d+)$", n))]
    return f"{prefix}{max(numbers) + 1}"
