"""The SageMaker and CloudWatch adapters against moto (server mode) and the UpdateEndpoint fake."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.integrations import cloudwatch
from bot.integrations import sagemaker
from bot.integrations.aws import AwsClients
from bot.integrations.cloudwatch import CloudWatch
from bot.integrations.sagemaker import SageMaker
from tests.rollout.conftest import REGION, put_traffic, weights


@pytest.fixture
def sm() -> SageMaker:
    return SageMaker(AwsClients())


@pytest.fixture
def cw() -> CloudWatch:
    return CloudWatch(AwsClients())


class _OneClient:
    """AwsClients that hands out one given client."""

    def __init__(self, client):
        self._client = client

    def client(self, service, region, **_):
        return self._client


def test_set_weights_reads_first_and_never_shifts_twice(churn_endpoint, sagemaker_proxy, sm):
    assert sm.set_weights("churn-prod", REGION, {"v41": 0.75, "v42": 0.25}) is True
    assert weights() == {"v41": 0.75, "v42": 0.25}
    # A retry after a crash: the endpoint already has the target, so no second update is sent.
    assert sm.set_weights("churn-prod", REGION, {"v41": 0.75, "v42": 0.25}) is False
    assert sagemaker_proxy.operations.count("UpdateEndpointWeightsAndCapacities") == 1
    # A zero weight really is sent as 0 (an SDK that drops zero-valued fields would leave 0.25 in place).
    assert sm.set_weights("churn-prod", REGION, {"v41": 1.0, "v42": 0.0}) is True
    assert weights() == {"v41": 1.0, "v42": 0.0}


def test_set_weights_names_what_is_missing(churn_endpoint, sm):
    with pytest.raises(sagemaker.VariantNotFound) as err:
        sm.set_weights("churn-prod", REGION, {"v41": 0.5, "v99": 0.5})
    assert "`churn-prod` has no variant `v99` (it has `v41`, `v42`)" in str(err.value)
    assert "weights were not changed" in str(err.value)
    with pytest.raises(sagemaker.EndpointNotFound) as err:
        sm.set_weights("nope-prod", REGION, {"a": 1.0})
    assert "SageMaker endpoint `nope-prod` was not found in us-east-1" in str(err.value)


def test_update_endpoint_moves_to_another_config_once(churn_endpoint, sagemaker_proxy, sm):
    name = sm.ensure_single_variant_config("churn-prod-config-1", "v42", "churn-prod-v42-r1", REGION)
    assert sm.ensure_single_variant_config("churn-prod-config-1", "v42", name, REGION) == name  # reused
    config = sm.describe_endpoint_config(name, REGION)
    [variant] = config["ProductionVariants"]
    assert variant["VariantName"] == "v42" and variant["InitialVariantWeight"] == 1.0
    assert variant["InstanceType"] == "ml.m5.large" and variant["ModelName"] == "churn-prod-v42"

    assert sm.update_endpoint_config("churn-prod", name, REGION) is True
    state = sm.describe_endpoint("churn-prod", REGION)
    assert state.config_name == name and [v.name for v in state.variants] == ["v42"]
    assert sm.update_endpoint_config("churn-prod", name, REGION) is False  # already there: no call
    assert len(sagemaker_proxy.update_calls) == 1


def test_update_endpoint_failures_name_sagemaker_and_what_was_not_done(churn_endpoint, sagemaker_proxy, sm):
    with pytest.raises(sagemaker.SageMakerError) as err:
        sm.update_endpoint_config("churn-prod", "no-such-config", REGION)
    assert str(err.value).startswith("SageMaker did not move endpoint `churn-prod`")
    assert "Could not find endpoint configuration" in str(err.value) and "left as it was" in str(err.value)
    assert sm.describe_endpoint("churn-prod", REGION).config_name == "churn-prod-config-1"


def test_counts_for_many_rollouts_in_few_calls(rollout_aws, t0, cw):
    """200 rollouts with their own step starts: 3 GetMetricData calls (1,200 queries), each rollout's sums
    counted from its own step start only."""
    queries = []
    for i in range(200):
        start = t0 + timedelta(minutes=i % 7)
        queries.append(cloudwatch.RolloutQuery(key=i, endpoint=f"ep-{i}", variants=("a", "b"), since=start))
    for i in (0, 6, 61, 199):
        q = queries[i]
        put_traffic(q.endpoint, "a", q.since - timedelta(minutes=1), 1000, 50)  # before the step: not counted
        put_traffic(q.endpoint, "a", q.since, 100 + i, 1, 2)
        put_traffic(q.endpoint, "b", q.since + timedelta(minutes=2), 10 + i, 3, 0)
    result = cw.fetch_counts(queries, REGION, end=t0 + timedelta(minutes=20))
    assert result.calls == 3 == cloudwatch.calls_needed(200)
    assert not result.failed
    for i in (0, 6, 61, 199):
        assert result.counts[i]["a"] == cloudwatch.VariantCounts(100 + i, 1, 2)
        assert result.counts[i]["b"] == cloudwatch.VariantCounts(10 + i, 3, 0)
    assert result.counts[1]["a"] == cloudwatch.VariantCounts(0, 0, 0)


def test_a_step_that_began_mid_minute_counts_from_the_next_whole_minute(rollout_aws, t0, cw):
    put_traffic("ep", "a", t0, 500)  # the minute the shift happened in: partly the old split
    put_traffic("ep", "a", t0 + timedelta(minutes=1), 70)
    q = cloudwatch.RolloutQuery(key=1, endpoint="ep", variants=("a",), since=t0 + timedelta(seconds=20))
    result = cw.fetch_counts([q], REGION, end=t0 + timedelta(minutes=5))
    assert result.counts[1]["a"].requests == 70


class _Paginating:
    """A CloudWatch client that answers like the real one does for big answers: in pages, with NextToken;
    and fails the call it is told to fail."""

    def __init__(self, fail_call: int | None = None):
        self.calls = 0
        self.fail_call = fail_call

    def get_metric_data(self, MetricDataQueries, StartTime, EndTime, ScanBy, NextToken=None):
        from botocore.exceptions import ClientError

        self.calls += 1
        if self.calls == self.fail_call:
            raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "GetMetricData")
        page = int(NextToken or 0)
        results = [{"Id": q["Id"], "Timestamps": [StartTime + timedelta(minutes=page)], "Values": [10.0]}
                   for q in MetricDataQueries]
        return {"MetricDataResults": results, **({"NextToken": str(page + 1)} if page < 2 else {})}


def test_pages_are_summed_and_a_failed_call_costs_only_its_batch(t0):
    fake = _Paginating()
    cw = CloudWatch(_OneClient(fake))
    queries = [cloudwatch.RolloutQuery(key=i, endpoint="ep", variants=("a", "b"), since=t0) for i in range(90)]
    result = cw.fetch_counts(queries, REGION, end=t0 + timedelta(minutes=10))
    assert result.counts[0]["a"] == cloudwatch.VariantCounts(30, 30, 30)  # three pages of 10
    assert result.calls == 6  # two batches of three pages

    fake = _Paginating(fail_call=4)  # the second batch's first page
    cw = CloudWatch(_OneClient(fake))
    result = cw.fetch_counts(queries, REGION, end=t0 + timedelta(minutes=10))
    assert len(result.counts) == 83 and len(result.failed) == 7
    assert "CloudWatch did not return SageMaker invocation metrics in us-east-1 (Rate exceeded)" in result.failed[89]


def test_the_minute_in_progress_is_not_counted(rollout_aws, t0, cw):
    """At 12:03:30 the minute 12:03 is still filling up (and its metrics arrive one by one): not counted yet."""
    put_traffic("ep", "a", t0, 100, 1, 0)
    put_traffic("ep", "a", t0 + timedelta(minutes=3), 40, 5, 0)
    q = cloudwatch.RolloutQuery(key=1, endpoint="ep", variants=("a",), since=t0)
    result = cw.fetch_counts([q], REGION, end=t0 + timedelta(minutes=3, seconds=30))
    assert result.counts[1]["a"] == cloudwatch.VariantCounts(100, 1, 0)
    result = cw.fetch_counts([q], REGION, end=t0 + timedelta(minutes=4))
    assert result.counts[1]["a"] == cloudwatch.VariantCounts(140, 6, 0)


class _Answering:
    """A CloudWatch client answering every query with one datapoint per minute given, per metric; `status`
    (per metric) is the StatusCode it reports, `drop` the metrics it leaves out of the answer altogether."""

    def __init__(self, minutes: dict[str, list], status: dict[str, str] | None = None, drop: tuple = ()):
        self.minutes, self.status, self.drop = minutes, status or {}, drop

    def get_metric_data(self, MetricDataQueries, StartTime, EndTime, ScanBy, NextToken=None):
        results = []
        for q in MetricDataQueries:
            metric = q["MetricStat"]["Metric"]["MetricName"]
            if metric in self.drop:
                continue
            stamps = self.minutes.get(metric, [])
            results.append({"Id": q["Id"], "Timestamps": list(stamps), "Values": [10.0] * len(stamps),
                            "StatusCode": self.status.get(metric, "Complete")})
        return {"MetricDataResults": results}


@pytest.mark.parametrize("case", ["partial", "internal error", "series missing", "errors lag behind"])
def test_incomplete_data_is_not_counted_as_zero_errors(t0, case):
    every = [t0, t0 + timedelta(minutes=1)]
    fake = {
        "partial": _Answering({m: every for m in cloudwatch.METRICS}, status={"Invocation5XXErrors": "PartialData"}),
        "internal error": _Answering({m: every for m in cloudwatch.METRICS},
                                     status={"Invocation4XXErrors": "InternalError"}),
        "series missing": _Answering({m: every for m in cloudwatch.METRICS}, drop=("Invocation5XXErrors",)),
        # Invocations for 12:01 arrived, its 5XX count not yet.
        "errors lag behind": _Answering({"Invocations": every, "Invocation5XXErrors": every[:1],
                                         "Invocation4XXErrors": every}),
    }[case]
    queries = [cloudwatch.RolloutQuery(key=1, endpoint="ep", variants=("a", "b"), since=t0)]
    result = CloudWatch(_OneClient(fake)).fetch_counts(queries, REGION, end=t0 + timedelta(minutes=5))
    assert 1 not in result.counts, f"judged on {result.counts.get(1)}"
    reason = result.incomplete[1]
    assert "incomplete" in reason and "`a`" in reason, reason
    word = {"partial": "PartialData", "internal error": "InternalError", "series missing": "Invocation5XXErrors",
            "errors lag behind": "Invocation5XXErrors"}[case]
    assert word in reason, reason

    complete = _Answering({m: every for m in cloudwatch.METRICS})
    result = CloudWatch(_OneClient(complete)).fetch_counts(queries, REGION, end=t0 + timedelta(minutes=5))
    assert result.counts[1]["a"] == cloudwatch.VariantCounts(20, 20, 20) and not result.incomplete
