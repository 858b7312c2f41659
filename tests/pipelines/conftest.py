"""Pipeline fixtures: the DAG file's steps (loaded the way `modelbot pipeline check` loads them), model modules
written into a folder on sys.path, and moto with the UpdateEndpoint fake in front of SageMaker."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import textwrap
from pathlib import Path

import boto3
import pytest

from bot.pipelines import dag_file
from tests.harness import ROOT

EXAMPLE = ROOT / "dags" / "examples" / "churn_model.py"
REGION = "us-east-1"
BUCKET = "ml-artifacts"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn-serving:latest"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"

PIPELINE_TOML = f"""
[defaults]
region = "us-east-1"
alert_channel = "C0ALERTS"
oncall = "S0ONCALL"
admins = ["U0ADMIN"]

[models.churn]
dag_id = "churn_pipeline"
endpoint = "churn-prod"
channel = "C0CHURN"
metric = "auc"
direction = "maximize"
owners = ["U0ALICE"]

[models.churn.pipeline]
module = "churn_model"
label = "churned"
image = "{IMAGE}"
artifacts = "s3://{BUCKET}/churn"
"""


@pytest.fixture(scope="session")
def steps():
    return dag_file.load()


# Schemas that accept anything a test module's rows and predictions hold, for modules about something else.
OPEN_SCHEMAS = 'REQUEST_SCHEMA = {"type": "object"}\nRESPONSE_SCHEMA = {"type": ["number", "array"]}\n'


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """write(name, source) puts a module on sys.path (with OPEN_SCHEMAS unless it declares its own, or
    schemas=False); the example module is there as churn_model."""
    folder = tmp_path / "modules"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "churn_model.py")
    monkeypatch.syspath_prepend(str(folder))
    written = {"churn_model"}

    def write(name: str, source: str, *, schemas: bool = True) -> Path:
        path = folder / f"{name}.py"
        source = textwrap.dedent(source)
        if schemas and "REQUEST_SCHEMA" not in source:
            source += "\n" + OPEN_SCHEMAS
        path.write_text(source)
        written.add(name)
        sys.modules.pop(name, None)
        return path

    write.folder = folder
    yield write
    for name in written:
        sys.modules.pop(name, None)


@pytest.fixture
def pipeline_proxy(sagemaker_proxy):
    return sagemaker_proxy


@pytest.fixture
def pipeline_aws(proxied_aws, sagemaker_proxy):
    """moto reset, the artifacts bucket made; SageMaker through the UpdateEndpoint fake."""
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    yield sagemaker_proxy


def pipeline(steps, **changes):
    values = dict(model="churn", dag_id="churn_pipeline", endpoint="churn-prod", metric="auc", direction="maximize",
                  region=REGION, module="churn_model", label="churned", image=IMAGE,
                  artifacts=f"s3://{BUCKET}/churn")
    values.update(changes)
    return steps.Pipeline(**values)


def first_feature_model() -> dict:
    """A weaker model than the example trains: it only ever learned from the first feature."""
    return {"features": ["tenure_z", "complaints_z"], "weights": [0.0, 1.0, 0.0]}


def register_production(steps, model: dict, *, group: str = "churn", key: str = "churn/prod/model.tar.gz",
                        schemas: dict | None = None) -> str:
    """An Approved package in the group, its model.tar.gz in S3 (and its schemas.json when given), as an
    earlier pipeline run leaves it."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key=key, Body=steps.model_tarball(pickle.dumps(model)))
    metadata = {}
    if schemas is not None:
        schemas_key = key.rsplit("/", 1)[0] + "/schemas.json"
        s3.put_object(Bucket=BUCKET, Key=schemas_key, Body=json.dumps(schemas).encode())
        metadata = {"CustomerMetadataProperties": {"modelbot_schemas": f"s3://{BUCKET}/{schemas_key}"}}
    sm = boto3.client("sagemaker", region_name=REGION)
    try:
        sm.create_model_package_group(ModelPackageGroupName=group)
    except sm.exceptions.ClientError:
        pass
    return sm.create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/{key}"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        **metadata,
    )["ModelPackageArn"]


def weights(endpoint: str = "churn-prod") -> dict[str, float]:
    desc = boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName=endpoint)
    return {v["VariantName"]: v.get("CurrentWeight", 0.0) for v in desc["ProductionVariants"]}


def run_pipeline(steps, p, run_id: str, conf: dict | None = None):
    """preprocess -> train -> evaluate as the DAG's tasks run them; returns (data, trained, evaluation)."""
    conf = conf or {}
    s3 = steps.S3Artifacts(steps.aws_client("s3", REGION))
    sm = steps.aws_client("sagemaker", REGION)
    data = steps.step_preprocess(p, conf, run_id, s3)
    trained = steps.step_train(p, conf, run_id, data, s3)
    evaluation = steps.step_evaluate(p, run_id, data, trained, s3,
                                     steps.production_loader(sm, s3, p.group, p.artifacts), conf)
    return data, trained, evaluation


def config_of(endpoint: str = "churn-prod") -> dict:
    """The endpoint's current endpoint config, as DescribeEndpointConfig answers."""
    sm = boto3.client("sagemaker", region_name=REGION)
    return sm.describe_endpoint_config(EndpointConfigName=sm.describe_endpoint(EndpointName=endpoint)[
        "EndpointConfigName"])
