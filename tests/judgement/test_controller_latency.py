"""The controller judges latency for a model with a latency_margin: through moto's CloudWatch, a candidate slower
than the margin allows is rolled back (and the thread says why); latency that CloudWatch gave only in part is
not judged; a model without the margin is judged on error rates alone, as before."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from sqlalchemy import select

from bot.rollouts import service as rollouts
from bot.rollouts.tables import RolloutEvent
from jobs import rollout_controller
from tests.conftest import MODELS_TOML
from tests.rollout.conftest import (  # noqa: F401 -- fixtures
    REGION, churn_endpoint, deliver_all, put_traffic, rollout_aws, services, t0, weights)


@pytest.fixture
def models_file(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(MODELS_TOML.replace("bake_minutes = 60\n", "bake_minutes = 60\nlatency_margin = 0.2\n", 1))
    return path


def put_latency(variant: str, at, count: int, mean_us: float, stats=("SampleCount", "Sum")) -> None:
    values = {"SampleCount": float(count), "Sum": count * mean_us, "Minimum": mean_us / 2, "Maximum": mean_us * 3}
    boto3.client("cloudwatch", region_name=REGION).put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
        "MetricName": "ModelLatency", "Timestamp": at, "Unit": "Microseconds",
        "Dimensions": [{"Name": "EndpointName", "Value": "churn-prod"}, {"Name": "VariantName", "Value": variant}],
        "StatisticValues": {k: v for k, v in values.items() if k in stats or k in ("Minimum", "Maximum")}}])


def minutes_of_traffic(start, minutes: int, candidate_latency_us: float, stable_latency_us: float = 40_000.0,
                       per_minute: int = 1000):
    """Requests at the endpoint's split, equal error rates, each minute's ModelLatency."""
    split = weights()
    for k in range(minutes):
        at = start + timedelta(minutes=k)
        wobble = 1.0 + 0.04 * ((k * 7) % 5 - 2) / 2  # minute to minute, both variants alike
        for variant, latency in (("v41", stable_latency_us), ("v42", candidate_latency_us)):
            n = round(per_minute * split[variant] / sum(split.values()))
            if n:
                put_traffic("churn-prod", variant, at, n, round(n * 0.004), round(n * 0.01))
                put_latency(variant, at, n, latency * wobble * (1 + 0.01 * (k % 3)))


def deploy(services, t0):
    parent = services.slack.chat_postMessage(channel="C0CHURN", text="Run churn_lifecycle manual__1")["ts"]
    rid = rollouts.start_from_deploy(services, "churn", endpoint="churn-prod", stable_variant="v41",
                                     candidate_variant="v42", run_id="manual__1", channel="C0CHURN",
                                     thread_ts=parent, now=t0)
    return rid, parent


def test_a_candidate_slower_than_the_margin_allows_is_rolled_back(services, slack, churn_endpoint, t0):
    rid, parent = deploy(services, t0)
    now = t0
    for _ in range(4):  # 5 minutes a tick; the minute in progress is never read
        minutes_of_traffic(now, 5, candidate_latency_us=80_000.0)
        now += timedelta(minutes=5)
        rollout_controller.tick(services, now)
        deliver_all(services)
        if rollouts.load(services, rid).state != "progressing":
            break
    r = rollouts.load(services, rid)
    assert r.state == "rolled_back", r.state
    assert weights() == {"v41": 1.0, "v42": 0.0}
    [rollback] = [m for m in slack.thread("C0CHURN", parent) if m["text"].startswith(":rotating_light:")]
    assert "mean latency" in rollback["text"] and "latency margin" in rollback["text"], rollback["text"]


class PartialLatency:
    """moto's CloudWatch, except that ModelLatency comes back PartialData (CloudWatch still aggregating)."""

    def __init__(self, client):
        self._client = client

    def get_metric_data(self, **kwargs):
        answer = self._client.get_metric_data(**kwargs)
        names = {q["Id"]: q["MetricStat"]["Metric"]["MetricName"] for q in kwargs["MetricDataQueries"]}
        for series in answer["MetricDataResults"]:
            if names.get(series["Id"]) == "ModelLatency":
                series["StatusCode"] = "PartialData"
        return answer


def test_latency_cloudwatch_gave_in_part_is_not_judged(services, slack, churn_endpoint, t0, monkeypatch):
    rid, _ = deploy(services, t0)
    minutes_of_traffic(t0, 5, candidate_latency_us=400_000.0)  # ten times slower: would be rolled back at once
    clients = services.cloudwatch._clients
    real = clients.client
    monkeypatch.setattr(clients, "client", lambda name, region, **kw: PartialLatency(real(name, region, **kw))
                        if name == "cloudwatch" else real(name, region, **kw))
    stats = rollout_controller.tick(services, t0 + timedelta(minutes=5))
    assert stats.counts["not judged"] == 1, stats.summary()
    assert "ModelLatency" in " ".join(stats.problems) and "PartialData" in " ".join(stats.problems)
    assert rollouts.load(services, rid).state == "progressing" and weights() == {"v41": 0.9, "v42": 0.1}


def test_a_candidate_within_the_margin_shifts(services, slack, churn_endpoint, t0):
    rid, _ = deploy(services, t0)
    now = t0
    for _ in range(20):  # 20,000 requests a minute: the error rates are shown within the margin in under an hour
        minutes_of_traffic(now, 5, candidate_latency_us=41_000.0, per_minute=20_000)
        now += timedelta(minutes=5)
        rollout_controller.tick(services, now)
        if rollouts.load(services, rid).step_index > 0:
            break
    r = rollouts.load(services, rid)
    assert r.step_index == 1 and r.state == "progressing", (r.state, r.step_index)
    with services.store.session() as s:
        [shift] = s.scalars(select(RolloutEvent).where(RolloutEvent.rollout_id == rid,
                                                       RolloutEvent.kind == "shift")).all()
        reason = shift.detail["evidence"]["reason"]
    assert "latency within its +20% margin" in reason and "latency candidate 41" in reason, reason
