"""The sandbox's SageMaker hosting against moto: every endpoint variant runs modelbot-serve with its own trained
model, InvokeEndpoint (boto3's sagemaker-runtime) reaches it, what it captures and the labels churn's world
writes are in the formats modelbot's quality job reads, and a variant's server goes when the variant does."""

from __future__ import annotations

import json
import shutil
import time
from datetime import date, datetime, timezone
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from bot.quality import formats
from sandbox import seed
from sandbox.capture import CaptureWriter
from sandbox.churn_world import WORLD_URI, ChurnWorld
from sandbox.hosting import Hosting
from sandbox.runtime import RuntimeServer
from sandbox.world_clock import DAY, Schedule, WorldClock
from tests.harness import wait_until

MODELS = Path(__file__).resolve().parents[2] / "sandbox" / "models.toml"
LABELS = "s3://modelbot-sandbox/labels/churn/"


def _objects(prefix: str) -> list[str]:
    found = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket="modelbot-sandbox", Prefix=prefix)
    return sorted(o["Key"] for o in found.get("Contents", []))


def _read(key: str) -> bytes:
    return boto3.client("s3", region_name="us-east-1").get_object(Bucket="modelbot-sandbox", Key=key)["Body"].read()


def _move(endpoint: str, config: str, variants: list[dict]) -> None:
    """What UpdateEndpoint does (the sandbox's proxy: the endpoint recreated on the new config)."""
    sm = boto3.client("sagemaker", region_name="us-east-1")
    sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=variants)
    sm.delete_endpoint(EndpointName=endpoint)
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)


@pytest.fixture
def hosted(aws, tmp_path):
    """churn and fraud in production as the sandbox starts them, hosting and its runtime running."""
    models = tmp_path / "models.toml"
    shutil.copy(MODELS, models)
    s3, sm = boto3.client("s3", region_name="us-east-1"), boto3.client("sagemaker", region_name="us-east-1")
    for bucket in seed.buckets(models):
        s3.create_bucket(Bucket=bucket)
    seed.seed(models, sagemaker=sm, s3=s3, say=lambda _: None)
    lag = 4 * DAY
    clock = WorldClock(tmp_path / "clock.json", Schedule(time.time(), lag, 1.0, lag))
    hosting = Hosting(tmp_path / "hosting", poll_seconds=0.3, gone_grace=1.0)
    capture = CaptureWriter(hosting.s3, clock.now_utc, flush_seconds=3600)  # flushed by the test
    server = RuntimeServer(hosting, capture).start()
    hosting.start()
    runtime = boto3.client("sagemaker-runtime", region_name="us-east-1", endpoint_url=server.url)
    try:
        wait_until(lambda: {c.state for c in hosting.containers.values()} == {"serving"}, timeout=90, interval=0.2,
                   message=f"both variants serving: {hosting.state()}")
        yield hosting, capture, runtime, clock, models
    finally:
        server.stop()
        hosting.stop()


def test_each_variant_serves_its_own_model_behind_invoke_endpoint(hosted):
    hosting, capture, runtime, clock, models = hosted
    body = json.dumps({"instances": [{"tenure_z": 0.4, "complaints_z": -1.0}, {"tenure_z": -2.0, "complaints_z": 1.5}]})
    answer = runtime.invoke_endpoint(EndpointName="churn-prod", Body=body, ContentType="application/json",
                                     InferenceId="req-1")
    assert answer["InvokedProductionVariant"] == "v41"
    predictions = json.loads(answer["Body"].read())["predictions"]
    assert len(predictions) == 2 and all(0 < p < 1 for p in predictions)

    # A request its REQUEST_SCHEMA refuses: the caller gets ModelError, the model's 400 naming each field.
    with pytest.raises(ClientError) as refused:
        runtime.invoke_endpoint(EndpointName="churn-prod", ContentType="application/json",
                                Body=json.dumps({"instances": [{"tenure_z": 40, "complaints_z": "high"}]}))
    error = refused.value.response
    assert error["Error"]["Code"] == "ModelError" and error["OriginalStatusCode"] == 400
    fields = {e["field"]: e["message"] for e in json.loads(error["OriginalMessage"])["errors"]}
    assert fields == {"instances[0].tenure_z": "40 is greater than the maximum of 10",
                      "instances[0].complaints_z": '"high" is not of type "number"'}
    with pytest.raises(ClientError) as unknown:
        runtime.invoke_endpoint(EndpointName="nope-prod", Body=b"{}", ContentType="application/json")
    assert unknown.value.response["Error"]["Code"] == "ValidationError"

    # Captured as SageMaker captures, dated by the sandbox's clock, in the format modelbot's quality job reads.
    assert capture.flush() == 1  # the refused request is not captured
    [key] = _objects("churn/capture/churn-prod/v41/")
    world_day = clock.now_utc()
    assert key.startswith(f"churn/capture/churn-prod/v41/{world_day:%Y/%m/%d}/")
    record_id, day, scores = formats.parse_capture(_read(key).splitlines()[0], date(2000, 1, 1))
    assert (record_id, day) == ("req-1", world_day.date()) and scores == pytest.approx(predictions)
    assert day < datetime.now(timezone.utc).date()  # four days behind: outside the quality job's window

    # fraud's retrained candidate (the pipeline's own steps, its default linear link) joins the endpoint at 0.
    steps = seed.pipeline_steps()
    [p] = [p for p in steps.load_pipelines(models) if p.model == "fraud"]
    s3 = boto3.client("s3", region_name="us-east-1")
    data = steps.step_preprocess(p, {}, "candidate", steps.S3Artifacts(s3))
    trained = steps.step_train(p, {}, "candidate", data, steps.S3Artifacts(s3))
    sm = boto3.client("sagemaker", region_name="us-east-1")
    sm.create_model(ModelName="fraud-prod-v18", ExecutionRoleArn=seed.ROLE,
                    PrimaryContainer={"Image": p.image, "ModelDataUrl": trained["model_data_url"]})
    variant = {"InitialInstanceCount": 1, "InstanceType": "ml.m5.xlarge"}
    _move("fraud-prod", "fraud-prod-v18", [dict(variant, VariantName="v17", ModelName="fraud-prod-v17",
                                                InitialVariantWeight=1.0),
                                           dict(variant, VariantName="v18", ModelName="fraud-prod-v18",
                                                InitialVariantWeight=0.0)])
    wait_until(lambda: (c := hosting.container("fraud-prod", "v18")) is not None and c.state == "serving",
               timeout=90, interval=0.2, message="v18 serving")
    large = json.dumps({"instances": [{"amount": 9000.0, "merchant_risk": 0.3}]})
    old = runtime.invoke_endpoint(EndpointName="fraud-prod", TargetVariant="v17", Body=large,
                                  ContentType="application/json")
    assert 0 < json.loads(old["Body"].read())["predictions"][0] < 1
    with pytest.raises(ClientError) as broke:  # its own prediction breaks its RESPONSE_SCHEMA: a 500
        runtime.invoke_endpoint(EndpointName="fraud-prod", TargetVariant="v18", Body=large,
                                ContentType="application/json")
    assert broke.value.response["OriginalStatusCode"] == 500
    message = json.loads(broke.value.response["OriginalMessage"])
    assert message["error"] == ("the model's predictions do not match its response schema "
                                "(fraud_model.RESPONSE_SCHEMA)")
    assert message["errors"][0]["field"] == "predictions[0]"
    assert "is greater than the maximum of 1" in message["errors"][0]["message"]
    small = json.dumps({"instances": [{"amount": 40.0, "merchant_risk": 0.3}]})
    assert runtime.invoke_endpoint(EndpointName="fraud-prod", TargetVariant="v18", Body=small,
                                   ContentType="application/json")["InvokedProductionVariant"] == "v18"
    assert hosting.container("fraud-prod", "v18").served.errors_5xx == 1

    # The candidate leaves the endpoint: its server stops.
    server = hosting.container("fraud-prod", "v18").proc
    _move("fraud-prod", "fraud-prod-v17-again", [dict(variant, VariantName="v17", ModelName="fraud-prod-v17",
                                                      InitialVariantWeight=1.0)])
    wait_until(lambda: hosting.container("fraud-prod", "v18") is None and server.poll() is not None, timeout=30,
               interval=0.2, message="v18's server stopped")
    assert hosting.container("fraud-prod", "v17").state == "serving"


def test_a_variant_whose_container_cannot_start_says_why(hosted):
    hosting, _, runtime, _, _ = hosted
    sm = boto3.client("sagemaker", region_name="us-east-1")
    sm.create_model(ModelName="churn-prod-v42", ExecutionRoleArn=seed.ROLE,
                    PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn-serving:sandbox",
                                      "Environment": {"MODELBOT_MODEL_MODULE": "no_such_model"}})
    variant = {"InitialInstanceCount": 1, "InstanceType": "ml.m5.xlarge", "InitialVariantWeight": 0.0}
    _move("churn-prod", "churn-prod-v42", [dict(variant, VariantName="v41", ModelName="churn-prod-v41",
                                                InitialVariantWeight=1.0),
                                           dict(variant, VariantName="v42", ModelName="churn-prod-v42")])
    wait_until(lambda: (c := hosting.container("churn-prod", "v42")) is not None and c.state == "failed",
               timeout=90, interval=0.2, message="v42 failed")
    assert "modelbot-serve: cannot import no_such_model" in hosting.container("churn-prod", "v42").failure
    with pytest.raises(ClientError) as failed:
        runtime.invoke_endpoint(EndpointName="churn-prod", TargetVariant="v42", Body=b"{}",
                                ContentType="application/json")
    assert failed.value.response["OriginalStatusCode"] == 502
    assert "did not start: modelbot-serve: cannot import no_such_model" in failed.value.response["OriginalMessage"]


def test_churn_labels_arrive_later_in_model_monitor_format_and_drift_moves_the_world(aws, tmp_path):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="modelbot-sandbox")
    start = time.time()
    clock = WorldClock(tmp_path / "clock.json", Schedule(start, 4 * DAY, 1.0, 4 * DAY))
    world = ChurnWorld(s3, clock, LABELS, label_delay=15, day_seconds=20)
    from sandbox.models.churn_model import draw_customers
    import numpy as np

    customers = draw_customers(np.random.default_rng(1), 4)
    world.observe("req-7", customers)
    assert world.write_due(start + 1) == 0  # not yet: labels come LABEL_DELAY later
    assert world.write_due(time.time() + 16) == 1
    [key] = _objects("labels/churn/")
    assert key.startswith(f"labels/churn/{clock.now_utc():%Y/%m/%d}/")
    record_id, labels = formats.parse_label(_read(key).splitlines()[0])
    assert record_id == "req-7" and len(labels) == 4 and set(labels) <= {0.0, 1.0}
    assert formats.join_key("churn", record_id, 2, 4) == formats.join_key("churn", "req-7", 2, 4)

    world.publish()
    published = json.loads(_read(WORLD_URI.removeprefix("s3://modelbot-sandbox/")))
    assert published["coefficients"]["tenure_z"] == 1.5
    world.set_drift(True)  # a day every 20 s, until the clock reaches today
    schedule = clock.schedule()
    assert schedule.catching_up(time.time()) and schedule.lag_at(time.time() + 40) == pytest.approx(2 * DAY, rel=0.01)
    assert schedule.lag_at(time.time() + 200) == 0
    later = clock.now(time.time() + 40)
    assert world.coefficients(later)["tenure_z"] == pytest.approx(1.5 - 0.5 * 2, abs=0.01)
    world.set_drift(False)
    assert not clock.schedule().catching_up(time.time())
    # The hosting process reads the same clock from its file.
    assert WorldClock(tmp_path / "clock.json").schedule() == clock.schedule()
