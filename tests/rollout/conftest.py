"""Rollout fixtures: moto (server mode) with the UpdateEndpoint fake in front of SageMaker, the Slack emulator,
a fresh database, and traffic written to CloudWatch per variant with the endpoint's real split."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from tests.endpoints import create_endpoint

REGION = "us-east-1"



@pytest.fixture
def rollout_aws(proxied_aws):
    """moto reset; SageMaker through the UpdateEndpoint fake, CloudWatch straight to moto."""
    return proxied_aws


@pytest.fixture
def services(make_services, rollout_aws):
    return make_services()


@pytest.fixture
def t0() -> datetime:
    """A whole minute a day ago: virtual time runs forward from here and stays in CloudWatch's past."""
    return (datetime.now(timezone.utc) - timedelta(hours=24)).replace(second=0, microsecond=0)


@pytest.fixture
def churn_endpoint(rollout_aws):
    """churn-prod as a deploy leaves it: v41 carries all traffic, the candidate v42 is on it at weight 0."""
    return create_endpoint("churn-prod", {"v41": 1.0, "v42": 0.0})


def put_traffic(endpoint: str, variant: str, at: datetime, requests: int, errors_5xx: int = 0, errors_4xx: int = 0):
    cw = boto3.client("cloudwatch", region_name=REGION)
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": name, "Dimensions": dims, "Timestamp": at, "Value": float(value), "Unit": "None"}
        for name, value in (("Invocations", requests), ("Invocation5XXErrors", errors_5xx),
                            ("Invocation4XXErrors", errors_4xx))
    ])


def weights(endpoint: str = "churn-prod") -> dict[str, float]:
    desc = boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName=endpoint)
    return {v["VariantName"]: v.get("CurrentWeight", 0.0) for v in desc["ProductionVariants"]}


@dataclass
class Traffic:
    """Requests arriving at the endpoint, split by its current weights, with fixed error rates per variant."""

    per_minute: int
    rate_5xx: dict[str, float]
    rate_4xx: dict[str, float] | None = None
    endpoint: str = "churn-prod"

    def write(self, start: datetime, minutes: int) -> None:
        """One datapoint per variant for the block of minutes (CloudWatch sums them the same way)."""
        split = weights(self.endpoint)
        total = sum(split.values()) or 1.0
        for variant, weight in split.items():
            n = round(self.per_minute * minutes * weight / total)
            if n == 0:
                continue
            e5 = round(n * self.rate_5xx.get(variant, 0.0))
            e4 = round(n * (self.rate_4xx or {}).get(variant, 0.0))
            put_traffic(self.endpoint, variant, start, n, e5, e4)


def deliver_all(services, later: timedelta = timedelta(0)) -> list[str]:
    """What the worker's delivery jobs do beside the controller, `later` from now (past every back-off when
    it is long enough): the Slack outbox, PagerDuty, then the pages' Slack part. A job that fails is reported,
    as the worker logs it, and the others still run. Returns the failures."""
    import importlib

    from bot.slack import outbox
    from bot.store.base import utcnow

    failures = []
    at = utcnow() + later
    try:
        outbox.deliver_due(services, now=at)
    except Exception as exc:  # noqa: BLE001 - the worker's job loop catches everything too
        failures.append(f"outbox: {type(exc).__name__}: {exc}")
    for name in ("pagerduty_delivery", "page_escalation"):
        try:
            job = importlib.import_module(f"jobs.{name}")  # here, so this file loads on an older design too
        except ImportError:
            continue
        try:
            job.run_once(services, now=at)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    return failures


def run_ticks(services, traffic: Traffic | None, start: datetime, ticks: int, every: int = 10,
              stop=lambda: False) -> datetime:
    """Each tick: traffic for the next `every` minutes at the split the endpoint has now, then a controller
    pass at the end of them, then the worker's delivery jobs. Returns the virtual time reached."""
    from jobs import rollout_controller

    now = start
    for _ in range(ticks):
        if traffic is not None:
            traffic.write(now, every)
        now += timedelta(minutes=every)
        rollout_controller.tick(services, now)
        deliver_all(services)
        if stop():
            break
    return now


def thread_of(slack, services, rollout_id: int) -> list[dict]:
    from bot.rollouts import service as rollouts

    r = rollouts.load(services, rollout_id)
    return slack.thread(r.thread_channel, r.thread_ts)


def texts(messages) -> list[str]:
    return [m.get("text", "") for m in messages]
