"""Scaling fixtures: moto with SageMaker and Application Auto Scaling both behind the UpdateEndpoint fake (which
refuses to remove a variant that is still a scalable target, and brings a variant's instances inside its new
bounds as Application Auto Scaling does), the Slack emulator, a fresh database, and a models file whose churn
model has a scaling table and a short rollout."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from bot.integrations.autoscaling import DIMENSION, resource_id
from bot.pricing.service import store_prices
from bot.integrations.price_list import Fetched, PriceRecord

REGION = "us-east-1"

MODELS = """
[defaults]
region = "us-east-1"
alert_channel = "C0ALERTS"
oncall = "S0ONCALL"
admins = ["U0ADMIN"]

[models.churn]
dag_id = "churn_lifecycle"
endpoint = "churn-prod"
channel = "C0CHURN"
metric = "auc"
owners = ["U0ALICE"]
oncall = "U0BOB"

[models.churn.rollout]
steps = [50, 100]
min_requests = 200
margin = 0.01
alpha = 0.05
max_step_minutes = 120
bake_minutes = 10

[models.churn.scaling]
min_instances = 1
max_instances = 6
target_invocations_per_instance = 700
scale_in_cooldown_seconds = 600

[models.fraud]
endpoint = "fraud-prod"
channel = "C0FRAUD"
owners = ["U0CAROL"]
"""

# Real us-east-1 on-demand hosting prices (2025), enough to tell types apart.
PRICES = [("ml.t2.medium", 2, 4, 0, 0.056), ("ml.c5.large", 2, 4, 0, 0.102), ("ml.m5.large", 2, 8, 0, 0.115),
          ("ml.c5.xlarge", 4, 8, 0, 0.204), ("ml.m5.xlarge", 4, 16, 0, 0.23), ("ml.m5.2xlarge", 8, 32, 0, 0.461),
          ("ml.g4dn.xlarge", 4, 16, 1, 0.736)]


@pytest.fixture
def scaling_models(tmp_path: Path) -> Path:
    path = tmp_path / "models-scaling.toml"
    path.write_text(MODELS)
    return path


@pytest.fixture
def scaling_aws(proxied_aws, sagemaker_proxy, monkeypatch):
    """moto reset; SageMaker and Application Auto Scaling through the fake, CloudWatch straight to moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING", sagemaker_proxy.url)
    return proxied_aws


@pytest.fixture
def services(make_services, scaling_aws, scaling_models):
    made = make_services(MODELS_FILE=str(scaling_models))
    seed_prices(made)
    return made


def seed_prices(services, region: str = REGION) -> None:
    records = [PriceRecord(region, t, vcpu, mem, gpus, 16.0 if gpus else None, usd) for t, vcpu, mem, gpus, usd in PRICES]
    store_prices(services.store, Fetched(region=region, source="api", records=records))


def create_endpoint(name: str, variants: dict[str, tuple[float, int]], *, instance_type: str = "ml.m5.large",
                    config_name: str | None = None) -> str:
    """An endpoint whose variants have (weight, instances)."""
    sm = boto3.client("sagemaker", region_name=REGION)
    for variant in variants:
        sm.create_model(ModelName=f"{name}-{variant}", ExecutionRoleArn="arn:aws:iam::123456789012:role/t",
                        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"})
    config_name = config_name or f"{name}-config-1"
    sm.create_endpoint_config(EndpointConfigName=config_name, ProductionVariants=[
        {"VariantName": v, "ModelName": f"{name}-{v}", "InitialInstanceCount": count, "InstanceType": instance_type,
         "InitialVariantWeight": weight} for v, (weight, count) in variants.items()])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=config_name)
    return config_name


def aas():
    return boto3.client("application-autoscaling", region_name=REGION)


def target(endpoint: str, variant: str) -> dict | None:
    found = aas().describe_scalable_targets(ServiceNamespace="sagemaker", ScalableDimension=DIMENSION,
                                            ResourceIds=[resource_id(endpoint, variant)])["ScalableTargets"]
    return found[0] if found else None


def policy_target(endpoint: str, variant: str) -> float | None:
    rid = resource_id(endpoint, variant)
    for p in aas().describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]:
        if p["ResourceId"] == rid:
            return p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
    return None


def counts(endpoint: str) -> dict[str, int | None]:
    desc = boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName=endpoint)
    return {v["VariantName"]: v.get("CurrentInstanceCount") for v in desc["ProductionVariants"]}


def set_count(endpoint: str, variant: str, count: int) -> None:
    """Instances coming into service (what SageMaker does minutes after Application Auto Scaling asks)."""
    sm = boto3.client("sagemaker", region_name=REGION)
    desc = sm.describe_endpoint(EndpointName=endpoint)
    sm.update_endpoint_weights_and_capacities(EndpointName=endpoint, DesiredWeightsAndCapacities=[
        {"VariantName": v["VariantName"], "DesiredWeight": v["CurrentWeight"],
         "DesiredInstanceCount": count if v["VariantName"] == variant else v["CurrentInstanceCount"]}
        for v in desc["ProductionVariants"]])


def worker_pass(services) -> str:
    """What the worker's endpoint snapshot and scaling jobs do in one pass."""
    from bot.status import snapshot
    from jobs import scaling

    snapshot.take(services)
    return scaling.run_once(services)


def channel_texts(slack, channel: str = "C0CHURN") -> list[str]:
    return [m["text"] for m in slack.messages(channel)]
