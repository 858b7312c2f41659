"""Quality fixtures: an endpoint in moto whose config captures Input and Output, the capture and labels buckets,
and writers of files in AWS's exact formats (data capture JSON Lines; Model Monitor ground truth)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone

import boto3
import pytest

from tests.conftest import MODELS_TOML
from tests.endpoints import IMAGE, ROLE

REGION = "us-east-1"
CAPTURE_BUCKET, LABELS_BUCKET = "ml-capture", "ml-labels"
CAPTURE_URI = f"s3://{CAPTURE_BUCKET}/datacapture"
LABELS_URI = f"s3://{LABELS_BUCKET}/churn/ground-truth/"
ENDPOINT = "churn-prod"
TODAY = datetime.now(timezone.utc).date()

QUALITY = """
[models.churn.quality]
labels = "{labels}"
window_days = {window}
tolerance = {tolerance}
min_labels = {min_labels}
retrain_on_decay = {auto}
"""


# Where the capture is when no endpoint says (the generated DAG's deploy step turns capture on with this).
PIPELINE = f"""
[models.churn.pipeline]
module = "churn_model"
label = "churned"
image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:1"
artifacts = "s3://ml-artifacts/churn"
capture_uri = "{CAPTURE_URI}"
"""


def models_toml(*, window: int = 3, tolerance: float = 0.05, min_labels: int = 20, auto: bool = False,
                pipeline: bool = False) -> str:
    churn_end = MODELS_TOML.index("[models.fraud]")
    section = QUALITY.format(labels=LABELS_URI, window=window, tolerance=tolerance, min_labels=min_labels,
                             auto=str(auto).lower())
    return MODELS_TOML[:churn_end] + section + (PIPELINE if pipeline else "") + "\n" + MODELS_TOML[churn_end:]


def at(day: date, hour: int = 10, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=timezone.utc)


def capture_record(event_id: str, predictions: list, when: datetime, *, inference_id: str | None = None,
                   output: dict | None = None) -> dict:
    """One data capture line as SageMaker writes it for modelbot-serve ({"instances"} in, {"predictions"} out)."""
    request = {"instances": [{"tenure": 3 + i, "plan": "monthly"} for i in range(len(predictions))]}
    meta = {"eventId": event_id, "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if inference_id is not None:
        meta["inferenceId"] = inference_id
    return {
        "captureData": {
            "endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                              "data": json.dumps(request), "encoding": "JSON"},
            "endpointOutput": output or {"observedContentType": "application/json", "mode": "OUTPUT",
                                         "data": json.dumps({"predictions": predictions}), "encoding": "JSON"},
        },
        "eventMetadata": meta,
        "eventVersion": "0",
    }


def label_record(event_id: str, data: str, encoding: str = "CSV") -> dict:
    return {"groundTruthData": {"data": data, "encoding": encoding}, "eventMetadata": {"eventId": event_id},
            "eventVersion": "0"}


def jsonl(records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def create_capturing_endpoint(variants: dict[str, float], *, capture_uri: str = CAPTURE_URI,
                              modes: tuple[str, ...] = ("Input", "Output")) -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    for variant in variants:
        sm.create_model(ModelName=f"{ENDPOINT}-{variant}", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(
        EndpointConfigName=f"{ENDPOINT}-config-1",
        ProductionVariants=[{"VariantName": v, "ModelName": f"{ENDPOINT}-{v}", "InitialInstanceCount": 1,
                             "InstanceType": "ml.m5.large", "InitialVariantWeight": w} for v, w in variants.items()],
        DataCaptureConfig={"EnableCapture": True, "InitialSamplingPercentage": 100, "DestinationS3Uri": capture_uri,
                           "CaptureOptions": [{"CaptureMode": m} for m in modes],
                           "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]}},
    )
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=f"{ENDPOINT}-config-1")


@dataclass
class World:
    """The S3 side of one model: capture files per variant and hour, label files per hour; counts downloads."""

    services: object
    s3: object
    gets: list = field(default_factory=list)

    def put_capture(self, variant: str, when: datetime, records, *, raw: bytes | None = None,
                    name: str | None = None) -> str:
        key = (f"datacapture/{ENDPOINT}/{variant}/{when:%Y/%m/%d/%H}/"
               f"{name or when.strftime('%M-%S-') + '000-' + uuid.uuid4().hex}.jsonl")
        self.s3.put_object(Bucket=CAPTURE_BUCKET, Key=key, Body=raw if raw is not None else jsonl(records))
        return key

    def put_labels(self, when: datetime, records, *, raw: bytes | None = None, name: str | None = None) -> str:
        key = f"churn/ground-truth/{when:%Y/%m/%d/%H}/{name or uuid.uuid4().hex}.jsonl"
        self.s3.put_object(Bucket=LABELS_BUCKET, Key=key, Body=raw if raw is not None else jsonl(records))
        return key

    def measure(self, *, now: datetime | None = None, budget: float = 60.0):
        from bot.quality import episodes, measure

        model = self.services.registry.get("churn")
        outcome = measure.measure(self.services, model, now=now, budget=budget)
        episodes.act(self.services, model, outcome.windows)
        return outcome


@pytest.fixture
def quality_file(tmp_path):
    def write(**kwargs) -> str:
        path = tmp_path / f"models-quality-{uuid.uuid4().hex[:6]}.toml"
        path.write_text(models_toml(**kwargs))
        return str(path)

    return write


@pytest.fixture
def services(make_services, quality_file):
    """Services whose models file measures churn (min_labels 10); no S3: for tests that fill the store directly."""
    return make_services(MODELS_FILE=quality_file(min_labels=10))


@pytest.fixture
def world_for(aws, make_services, quality_file):
    """world_for(variants={"v41": 1.0}, **models_file_settings) -> a World with buckets, Services reading a models
    file with [models.churn.quality], and an endpoint whose config captures (endpoint=False: no endpoint; the
    models file's pipeline section names the capture destination, and a pass makes no SageMaker call that
    succeeds: quicker)."""

    def make(variants: dict[str, float] | None = None, *, endpoint: bool = True, modes=("Input", "Output"),
             settings: dict | None = None, **models):
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=CAPTURE_BUCKET)
        s3.create_bucket(Bucket=LABELS_BUCKET)
        if endpoint:
            create_capturing_endpoint(variants or {"v41": 1.0}, modes=modes)
        services = make_services(MODELS_FILE=quality_file(pipeline=not endpoint, **models), **(settings or {}))
        w = World(services=services, s3=s3)
        client = services.aws_clients.client("s3", REGION)
        client.meta.events.register("before-parameter-build.s3.GetObject",
                                    lambda params, **_: w.gets.append(params.get("Key")))
        return w

    return make
