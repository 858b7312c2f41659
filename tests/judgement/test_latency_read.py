"""ModelLatency from CloudWatch for the latency test: per variant and minute (Sum, SampleCount), batched like the
counts, whole minutes only, incomplete answers reported rather than judged; the sandbox's traffic writes it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import boto3
import pytest

from bot.integrations import cloudwatch
from bot.integrations.aws import AwsClients
from bot.integrations.cloudwatch import CloudWatch, RolloutQuery
from bot.rollouts import latency_minutes
from tests.endpoints import create_endpoint

REGION = "us-east-1"


def put_latency(endpoint: str, variant: str, at: datetime, count: int, mean_us: float) -> None:
    boto3.client("cloudwatch", region_name=REGION).put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
        "MetricName": "ModelLatency", "Timestamp": at, "Unit": "Microseconds",
        "Dimensions": [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}],
        "StatisticValues": {"SampleCount": count, "Sum": count * mean_us, "Minimum": mean_us / 2,
                            "Maximum": mean_us * 3}}])


@pytest.fixture
def t0() -> datetime:
    return (datetime.now(timezone.utc) - timedelta(hours=3)).replace(second=0, microsecond=0)


def test_whole_minutes_since_the_step_began_per_variant(aws, t0):
    for k in range(4):
        put_latency("ep", "v1", t0 + timedelta(minutes=k, seconds=10), 90, 40_000)
        put_latency("ep", "v2", t0 + timedelta(minutes=k, seconds=10), 10, 60_000)
    put_latency("ep", "v1", t0 + timedelta(minutes=1, seconds=40), 90, 20_000)  # a second datapoint that minute
    q = RolloutQuery(key=7, endpoint="ep", variants=("v1", "v2"), since=t0 + timedelta(seconds=30))
    # The step began at :30: its first whole minute is t0 + 1; at t0 + 3:30 the minute in progress is left out.
    got = CloudWatch(AwsClients()).fetch_latency([q], REGION, end=t0 + timedelta(minutes=3, seconds=30))
    assert not got.failed and not got.incomplete and got.calls == 1
    assert got.latency[7]["v1"] == {t0 + timedelta(minutes=1): (180 * 30_000.0, 180.0),
                                    t0 + timedelta(minutes=2): (90 * 40_000.0, 90.0)}
    assert got.latency[7]["v2"] == {t0 + timedelta(minutes=m): (10 * 60_000.0, 10.0) for m in (1, 2)}


def test_many_rollouts_share_a_call(aws, t0):
    queries = [RolloutQuery(key=i, endpoint=f"ep{i}", variants=("a", "b"), since=t0 + timedelta(minutes=i % 5))
               for i in range(130)]
    got = CloudWatch(AwsClients()).fetch_latency(queries, REGION, end=t0 + timedelta(minutes=30))
    assert got.calls == 2  # 4 queries a rollout, 500 a call
    assert len(got.latency) == 130 and got.latency[3] == {"a": {}, "b": {}}


class Answering:
    """A CloudWatch client answering each ModelLatency query with the given minutes; `status` per stat, `drop`
    the stats left out of the answer, `raise_` an error to raise instead."""

    def __init__(self, minutes: dict[str, list], status=None, drop=(), raise_=None):
        self.minutes, self.status, self.drop, self.raise_ = minutes, status or {}, drop, raise_

    def get_metric_data(self, MetricDataQueries, StartTime, EndTime, ScanBy, NextToken=None):
        if self.raise_:
            raise self.raise_
        results = []
        for q in MetricDataQueries:
            stat = q["MetricStat"]["Stat"]
            if stat in self.drop:
                continue
            stamps = self.minutes.get(stat, [])
            results.append({"Id": q["Id"], "Timestamps": list(stamps), "Values": [5.0] * len(stamps),
                            "StatusCode": self.status.get(stat, "Complete")})
        return {"MetricDataResults": results}


@pytest.mark.parametrize("case, phrase", [
    ("partial", "ModelLatency Sum PartialData"),
    ("series missing", "no ModelLatency SampleCount series"),
    ("count lags", "disagree about"),
])
def test_an_incomplete_answer_is_not_judged(t0, case, phrase):
    every = [t0, t0 + timedelta(minutes=1)]
    client = {"partial": Answering({"Sum": every, "SampleCount": every}, status={"Sum": "PartialData"}),
              "series missing": Answering({"Sum": every, "SampleCount": every}, drop=("SampleCount",)),
              "count lags": Answering({"Sum": every, "SampleCount": every[:1]})}[case]
    cw = CloudWatch(SimpleNamespace(client=lambda *a, **k: client))
    got = cw.fetch_latency([RolloutQuery(1, "ep", ("a", "b"), t0)], REGION, end=t0 + timedelta(minutes=5))
    assert 1 not in got.latency
    assert phrase in got.incomplete[1] and "`a`" in got.incomplete[1] and "not judged" in got.incomplete[1]


def test_a_failed_call_names_cloudwatch(t0):
    from botocore.exceptions import EndpointConnectionError

    client = Answering({}, raise_=EndpointConnectionError(endpoint_url="https://monitoring"))
    cw = CloudWatch(SimpleNamespace(client=lambda *a, **k: client))
    got = cw.fetch_latency([RolloutQuery(1, "ep", ("a", "b"), t0)], REGION, end=t0 + timedelta(minutes=5))
    assert "CloudWatch did not return SageMaker ModelLatency" in got.failed[1] and not got.latency


def test_only_models_with_a_latency_margin_are_read_and_minutes_are_paired(aws, t0):
    for k in range(3):
        put_latency("churn-prod", "v41", t0 + timedelta(minutes=k), 900, 40_000)
    for k in (1, 2):  # the candidate served from the second minute on
        put_latency("churn-prod", "v42", t0 + timedelta(minutes=k), 100, 50_000)
    registry = {"churn": SimpleNamespace(rollout=SimpleNamespace(latency_margin=0.2)),
                "fraud": SimpleNamespace(rollout=SimpleNamespace(latency_margin=None))}
    services = SimpleNamespace(registry=registry, cloudwatch=CloudWatch(AwsClients()))

    def rollout(rid, model):
        return SimpleNamespace(id=rid, model=model, endpoint=f"{model}-prod", stable_variant="v41",
                               candidate_variant="v42", when=lambda _: t0)

    got = latency_minutes.read(services, [rollout(1, "churn"), rollout(2, "fraud")], REGION,
                               t0 + timedelta(minutes=10))
    assert set(got.minutes) == {1} and not got.not_judged
    assert got.minutes[1].candidate_count == (100.0, 100.0) and got.minutes[1].stable_count == (900.0, 900.0)
    assert got.minutes[1].candidate_sum[0] / 100 == pytest.approx(50_000)


def test_the_sandbox_traffic_writes_model_latency(aws):
    from sandbox.traffic import Simulation

    create_endpoint("fraud-prod", {"v17": 0.9, "v18": 0.1})
    sim = Simulation({"endpoints": {"fraud-prod": {"per_minute": 60_000, "latency_ms": 40,
                                                   "new_variant_latency": 1.5}}}, seed=3)
    sim.discover()
    sim.set_rates("fraud-prod", "v18", 0.002, 0.004)
    sim.endpoints["fraud-prod"]["latency"]["v18"] = 1.5  # as if v18 had been deployed later
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=2)
    sim.tick(60)
    q = RolloutQuery(1, "fraud-prod", ("v17", "v18"), start)
    got = CloudWatch(AwsClients()).fetch_latency([q], REGION, end=datetime.now(timezone.utc) + timedelta(minutes=2))
    means = {v: sum(s for s, _ in m.values()) / sum(c for _, c in m.values()) for v, m in got.latency[1].items()}
    assert means["v17"] == pytest.approx(40_000, rel=0.2) and means["v18"] / means["v17"] == pytest.approx(1.5, rel=0.2)
    assert sum(c for _, c in got.latency[1]["v18"].values()) > 0
    assert cloudwatch.LATENCY_METRIC == "ModelLatency"
