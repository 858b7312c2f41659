"""The simulated traffic against moto: datapoints follow the endpoint's real weights and each variant's rates."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest

from sandbox.traffic import Simulation, daily_volume


def _endpoint(name: str, weights: dict[str, float]) -> None:
    sm = boto3.client("sagemaker", region_name="us-east-1")
    role = "arn:aws:iam::123456789012:role/sagemaker"
    variants = []
    for variant, weight in weights.items():
        sm.create_model(ModelName=f"{name}-{variant}", ExecutionRoleArn=role,
                        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/model:latest"})
        variants.append({"VariantName": variant, "ModelName": f"{name}-{variant}", "InitialInstanceCount": 1,
                         "InstanceType": "ml.m5.large", "InitialVariantWeight": weight})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=variants)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)


def _sums(endpoint: str, variant: str, start: datetime) -> dict[str, float]:
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    out = {}
    for metric in ("Invocations", "Invocation5XXErrors", "Invocation4XXErrors"):
        stats = cw.get_metric_statistics(
            Namespace="AWS/SageMaker", MetricName=metric, StartTime=start,
            EndTime=datetime.now(timezone.utc) + timedelta(minutes=1), Period=60, Statistics=["Sum"],
            Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}])
        out[metric] = sum(p["Sum"] for p in stats["Datapoints"])
    return out


def test_datapoints_follow_the_live_weights_and_each_variants_rates(aws):
    _endpoint("churn-prod", {"v41": 0.75, "v42": 0.25})
    sim = Simulation({"endpoints": {"churn-prod": {"per_minute": 100000, "stable": [0.001, 0.002],
                                                   "new_variant": [0.05, 0.002]}}}, seed=7)
    sim.discover()  # both variants serve at start: both get the stable rates
    sim.set_rates("churn-prod", "v42", 0.05, 0.0)  # ...until the panel makes v42 bad
    start = datetime.now(timezone.utc) - timedelta(minutes=1)
    sim.tick(60)
    old, new = _sums("churn-prod", "v41", start), _sums("churn-prod", "v42", start)
    expected = daily_volume(100000, datetime.now(timezone.utc))
    assert old["Invocations"] + new["Invocations"] == pytest.approx(expected, rel=0.01)
    assert new["Invocations"] / (old["Invocations"] + new["Invocations"]) == pytest.approx(0.25, abs=0.01)
    assert new["Invocation5XXErrors"] / new["Invocations"] == pytest.approx(0.05, rel=0.15)
    assert old["Invocation5XXErrors"] / old["Invocations"] == pytest.approx(0.001, rel=0.5)
    assert new["Invocation4XXErrors"] == 0
    state = sim.state()["endpoints"]["churn-prod"]
    assert [(v["name"], round(v["share"], 2)) for v in state["variants"]] == [("v41", 0.75), ("v42", 0.25)]


def test_a_variant_added_later_gets_the_new_variant_rates(aws):
    _endpoint("fraud-prod", {"v17": 1.0})
    sim = Simulation({"endpoints": {"fraud-prod": {"per_minute": 60000, "stable": [0.002, 0.004],
                                                   "new_variant": [0.03, 0.004]}}}, seed=1)
    sim.discover()
    sim.set_rates("fraud-prod", "*", 0.08, 0.0)  # the panel's "next new variant" row
    with pytest.raises(ValueError):
        sim.set_rates("fraud-prod", "v17", 1.5, 0.0)
    # A deploy adds v18 beside v17 (moto has no UpdateEndpoint: the endpoint is recreated with both).
    sm = boto3.client("sagemaker", region_name="us-east-1")
    _endpoint("fraud-two", {"v17": 0.5, "v18": 0.5})
    sm.delete_endpoint(EndpointName="fraud-prod")
    sm.create_endpoint(EndpointName="fraud-prod", EndpointConfigName="fraud-two")
    start = datetime.now(timezone.utc) - timedelta(minutes=1)
    sim.tick(60)
    old, new = _sums("fraud-prod", "v17", start), _sums("fraud-prod", "v18", start)
    assert new["Invocation5XXErrors"] / new["Invocations"] == pytest.approx(0.08, rel=0.15)
    assert old["Invocation5XXErrors"] / old["Invocations"] == pytest.approx(0.002, rel=0.5)
    assert new["Invocation4XXErrors"] == 0


class _Runtime:
    """InvokeEndpoint as the hosting answers: every `fail_every`-th request of `variant` is the model's 500."""

    def __init__(self, variant: str, fail_every: int):
        self.variant, self.fail_every, self.calls = variant, fail_every, {}

    def invoke_endpoint(self, **kw):
        from botocore.exceptions import ClientError

        n = self.calls[kw["TargetVariant"]] = self.calls.get(kw["TargetVariant"], 0) + 1
        if kw["TargetVariant"] == self.variant and n % self.fail_every == 0:
            raise ClientError({"Error": {"Code": "ModelError", "Message": "Received server error (500)"},
                               "OriginalStatusCode": 500,
                               "OriginalMessage": '{"error": "the model\'s predictions do not match its response '
                                                  'schema", "errors": [{"field": "predictions[0]", "message": '
                                                  '"1.3 is greater than the maximum of 1"}]}'}, "InvokeEndpoint")
        return {"Body": None, "InvokedProductionVariant": kw["TargetVariant"]}


def test_the_real_samples_errors_are_scaled_into_cloudwatchs_counts(aws):
    from sandbox.sampling import Sampler

    _endpoint("fraud-prod", {"v17": 0.5, "v18": 0.5})
    runtime = _Runtime("v18", fail_every=10)
    sampler = Sampler(runtime, {"fraud-prod": {"requests": "fraud", "instances": 1}}, per_second=10)
    sim = Simulation({"endpoints": {"fraud-prod": {"per_minute": 100000, "stable": [0.0, 0.0],
                                                   "new_variant": [0.0, 0.0]}}}, seed=3, sampler=sampler)
    sim.discover()
    start = datetime.now(timezone.utc) - timedelta(minutes=1)
    sim.tick(60)  # 600 real requests to each variant: v18's model answered 10% of them 500
    assert runtime.calls == {"v17": 600, "v18": 600}
    old, new = _sums("fraud-prod", "v17", start), _sums("fraud-prod", "v18", start)
    assert old["Invocation5XXErrors"] == 0  # nothing injected, nothing served wrong
    assert new["Invocation5XXErrors"] / new["Invocations"] == pytest.approx(0.10, rel=0.15)
    served = sim.state()["endpoints"]["fraud-prod"]["variants"][1]["served"]
    assert served["rate_5xx"] == pytest.approx(0.1, abs=0.01) and served["window"] == 300
    assert served["last_error"]["status"] == 500
    assert "predictions[0]: 1.3 is greater than the maximum of 1" in served["last_error"]["message"]
