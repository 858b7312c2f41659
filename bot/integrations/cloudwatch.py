"""CloudWatch adapter: SageMaker invocation and error counts per variant, many rollouts per GetMetricData call.

A controller tick needs three sums (Invocations, Invocation5XXErrors, Invocation4XXErrors) for two variants of
every progressing rollout. GetMetricData takes up to 500 queries a call, so 500 rollouts cost 6 calls instead
of 500. One call has one time window, while each rollout counts from its own step start: queries are sorted
by step start and cut into calls, each call asks for per-minute sums from the earliest start it holds, and
each rollout adds up only the minutes from its own start on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Hashable, Iterable, Iterator

from botocore.exceptions import BotoCoreError, ClientError

from bot.integrations import aws
from bot.errors import ExternalError

NAMESPACE = "AWS/SageMaker"
PERIOD_SECONDS = 60
MAX_QUERIES_PER_CALL = 500  # GetMetricData's limit
# Metric name -> short code used in query ids (ids must start with a lowercase letter).
METRICS = {"Invocations": "n", "Invocation5XXErrors": "f", "Invocation4XXErrors": "c"}
# ModelLatency (microseconds) per minute: its Sum and SampleCount give the minute's mean (issue 22).
LATENCY_METRIC = "ModelLatency"
LATENCY_STATS = ("Sum", "SampleCount")
# The instances' own metrics, for right-sizing (bot/cost/rightsizing.py).
UTILIZATION_NAMESPACE = "/aws/sagemaker/Endpoints"
UTILIZATION_METRICS = ("CPUUtilization", "MemoryUtilization")


class CloudWatchError(ExternalError):
    """GetMetricData failed; the message names CloudWatch and what was not read."""


@dataclass(frozen=True)
class VariantCounts:
    requests: int = 0
    errors_5xx: int = 0
    errors_4xx: int = 0


@dataclass(frozen=True)
class RolloutQuery:
    """Counts wanted for the variants of one endpoint from `since` (a rollout's step start) on."""

    key: Hashable
    endpoint: str
    variants: tuple[str, ...]
    since: datetime


@dataclass
class FetchResult:
    counts: dict[Hashable, dict[str, VariantCounts]] = field(default_factory=dict)
    calls: int = 0
    # Rollout keys whose counts could not be read this time, with the reason.
    failed: dict[Hashable, str] = field(default_factory=dict)
    # Rollout keys whose counts CloudWatch answered only in part (a series missing, a StatusCode other than
    # Complete, a minute with requests but no error count yet), with what was missing: not judged on them.
    incomplete: dict[Hashable, str] = field(default_factory=dict)


@dataclass
class LatencyResult:
    """ModelLatency per rollout and variant, minute by minute: {key: {variant: {minute (UTC): (sum, count)}}}."""

    latency: dict[Hashable, dict[str, dict[datetime, tuple[float, float]]]] = field(default_factory=dict)
    calls: int = 0
    failed: dict[Hashable, str] = field(default_factory=dict)  # as FetchResult's
    incomplete: dict[Hashable, str] = field(default_factory=dict)


@dataclass
class _Series:
    """What one metric query's answer said, over all its pages."""

    total: float = 0.0
    minutes: set = field(default_factory=set)  # minutes with a datapoint (of any value)
    busy: set = field(default_factory=set)  # minutes with a datapoint above 0
    status: str = "Complete"  # the last page's StatusCode
    failed_status: str | None = None  # InternalError / Forbidden, on any page


def first_full_minute(since: datetime) -> datetime:
    """CloudWatch sums by the minute; a minute that began before the step holds traffic at the old split, so
    counting starts at the first minute that lies wholly inside the step."""
    since = since.astimezone(timezone.utc)
    floor = since.replace(second=0, microsecond=0)
    return floor if floor == since else floor + timedelta(minutes=1)


def _metric_query(qid: str, endpoint: str, variant: str, metric: str, period: int = PERIOD_SECONDS,
                  stat: str = "Sum") -> dict:
    return {
        "Id": qid,
        "MetricStat": {
            "Metric": {
                "Namespace": NAMESPACE,
                "MetricName": metric,
                "Dimensions": [
                    {"Name": "EndpointName", "Value": endpoint},
                    {"Name": "VariantName", "Value": variant},
                ],
            },
            "Period": period,
            "Stat": stat,
        },
        "ReturnData": True,
    }


def _count(value: float | None) -> int:
    if value is None or math.isnan(value):
        return 0
    return int(round(value))


def _incomplete(q: RolloutQuery, i: int, answers: dict[tuple[int, str, str], _Series]) -> list[str]:
    """What is missing from the answers about one rollout's variants, one phrase per variant ([] when whole)."""
    problems = []
    for variant in q.variants:
        gaps = []
        for metric in METRICS:
            answer = answers.get((i, variant, metric))
            if answer is None:
                gaps.append(f"no {metric} series")
            elif answer.failed_status or answer.status != "Complete":
                gaps.append(f"{metric} {answer.failed_status or answer.status}")
        invocations = answers.get((i, variant, "Invocations"))
        if invocations is not None:
            for metric in ("Invocation5XXErrors", "Invocation4XXErrors"):
                errors = answers.get((i, variant, metric))
                lagging = sorted(invocations.busy - errors.minutes) if errors is not None else []
                if lagging:
                    gaps.append(f"requests at {lagging[0]:%H:%M} UTC but no {metric} for that minute yet")
        if gaps:
            problems.append(f"`{variant}` ({'; '.join(gaps)})")
    return problems


def calls_needed(rollouts: int, variants_per_rollout: int = 2, max_queries_per_call: int = MAX_QUERIES_PER_CALL) -> int:
    return math.ceil(rollouts * variants_per_rollout * len(METRICS) / max_queries_per_call)


class CloudWatch:
    """CloudWatch through boto3: SageMaker invocation and error counts per variant. Built once where the services
    are assembled (bot.services.Services) and handed in; raises CloudWatchError."""

    def __init__(self, clients: aws.AwsClients):
        self._clients = clients

    def fetch_counts(
        self, queries: Iterable[RolloutQuery], region: str, *, end: datetime, max_queries_per_call: int = MAX_QUERIES_PER_CALL
    ) -> FetchResult:
        """Sums since each query's start, up to `end`, in as few calls as the query limit allows.

        Calls are filled to the limit (a rollout's queries may span two calls). A failed call marks the rollouts
        it held as failed -- they are not judged on half their counts -- while the others still count.
        """
        queries = sorted(queries, key=lambda q: q.since)
        starts = [first_full_minute(q.since) for q in queries]
        # One entry per metric query, in step-start order: (rollout index, variant, metric).
        wanted = [(i, variant, metric) for i, q in enumerate(queries) for variant in q.variants for metric in METRICS]
        answers: dict[tuple[int, str, str], _Series] = {}
        failed: dict[int, str] = {}
        result = FetchResult()
        # The minute in progress is left out: its metrics arrive one by one (Invocations before the errors, say),
        # so it would be judged on a part of its counts. The next tick counts it whole.
        end_minute = end.astimezone(timezone.utc).replace(second=0, microsecond=0)
        for offset in range(0, len(wanted), max_queries_per_call):
            chunk = wanted[offset: offset + max_queries_per_call]
            start = min(starts[i] for i, _, _ in chunk)
            if start >= end_minute:
                continue  # no whole minute yet in any of these steps: nothing to read
            ids = {f"q{offset + k}": item for k, item in enumerate(chunk)}
            metric_queries = [_metric_query(qid, queries[i].endpoint, variant, metric)
                              for qid, (i, variant, metric) in ids.items()]
            try:
                self._call(metric_queries, ids, start, end_minute, starts, region, answers, result)
            except CloudWatchError as exc:
                for i, _, _ in chunk:
                    failed[i] = str(exc)
        for i, q in enumerate(queries):
            if i in failed:
                result.failed[q.key] = failed[i]
                continue
            missing = [] if starts[i] >= end_minute else _incomplete(q, i, answers)
            if missing:
                result.incomplete[q.key] = (f"CloudWatch's data for {', '.join(missing)} is incomplete; "
                                            "not judged this pass")
                continue
            result.counts[q.key] = {
                variant: VariantCounts(
                    requests=_count(answers.get((i, variant, "Invocations"), _Series()).total),
                    errors_5xx=_count(answers.get((i, variant, "Invocation5XXErrors"), _Series()).total),
                    errors_4xx=_count(answers.get((i, variant, "Invocation4XXErrors"), _Series()).total),
                )
                for variant in q.variants
            }
        return result


    def fetch_latency(
        self, queries: Iterable[RolloutQuery], region: str, *, end: datetime, max_queries_per_call: int = MAX_QUERIES_PER_CALL
    ) -> LatencyResult:
        """ModelLatency's per-minute Sum and SampleCount of each variant since each query's start, batched as
        fetch_counts is (125 rollouts a call), with the same rules: only whole minutes before the one in progress,
        and a rollout whose answer is partial (a series missing, a StatusCode other than Complete, a minute with a
        Sum but no SampleCount or the other way round) is reported incomplete rather than judged on part of it."""
        queries = sorted(queries, key=lambda q: q.since)
        starts = [first_full_minute(q.since) for q in queries]
        wanted = [(i, variant, stat) for i, q in enumerate(queries) for variant in q.variants for stat in LATENCY_STATS]
        values: dict[tuple[int, str, str], dict[datetime, float]] = {}
        status: dict[tuple[int, str, str], str] = {}
        failed: dict[int, str] = {}
        result = LatencyResult()
        end_minute = end.astimezone(timezone.utc).replace(second=0, microsecond=0)
        failure = (f"CloudWatch did not return SageMaker ModelLatency in {region} ({{detail}}); "
                   "the rollouts it was asked about were not judged this pass.")
        for offset in range(0, len(wanted), max_queries_per_call):
            chunk = wanted[offset: offset + max_queries_per_call]
            start = min(starts[i] for i, _, _ in chunk)
            if start >= end_minute:
                continue
            ids = {f"l{offset + k}": item for k, item in enumerate(chunk)}
            metric_queries = [_metric_query(qid, queries[i].endpoint, variant, LATENCY_METRIC, stat=stat)
                              for qid, (i, variant, stat) in ids.items()]
            try:
                for series in self._metric_data(metric_queries, start, end_minute, region, failure, result):
                    where = ids.get(series.get("Id", ""))
                    if where is None:
                        continue
                    minutes = values.setdefault(where, {})
                    for ts, value in zip(series.get("Timestamps", []), series.get("Values", [])):
                        at = ts.astimezone(timezone.utc)
                        if starts[where[0]] <= at < end_minute and not math.isnan(value):
                            minutes[at] = minutes.get(at, 0.0) + value
                    code = series.get("StatusCode") or "Complete"
                    status[where] = code if status.get(where) in (None, "Complete") else status[where]
            except CloudWatchError as exc:
                for i, _, _ in chunk:
                    failed[i] = str(exc)
        for i, q in enumerate(queries):
            if i in failed:
                result.failed[q.key] = failed[i]
                continue
            if starts[i] >= end_minute:
                result.latency[q.key] = {variant: {} for variant in q.variants}
                continue
            gaps = []
            for variant in q.variants:
                sums, counts = values.get((i, variant, "Sum")), values.get((i, variant, "SampleCount"))
                problems = [f"no ModelLatency {stat} series" for stat, v in zip(LATENCY_STATS, (sums, counts))
                            if v is None]
                problems += [f"ModelLatency {stat} {status[(i, variant, stat)]}" for stat in LATENCY_STATS
                             if status.get((i, variant, stat), "Complete") != "Complete"]
                if sums is not None and counts is not None and set(sums) != set(counts):
                    odd = min(set(sums) ^ set(counts))
                    problems.append(f"ModelLatency Sum and SampleCount disagree about {odd:%H:%M} UTC")
                if problems:
                    gaps.append(f"`{variant}` ({'; '.join(problems)})")
            if gaps:
                result.incomplete[q.key] = (f"CloudWatch's ModelLatency for {', '.join(gaps)} is incomplete; "
                                            "not judged this pass")
                continue
            result.latency[q.key] = {
                variant: {at: (values[(i, variant, "Sum")][at], values[(i, variant, "SampleCount")][at])
                          for at in sorted(values[(i, variant, "Sum")])}
                for variant in q.variants
            }
        return result


    def _call(self, metric_queries: list[dict], ids: dict[str, tuple[int, str, str]], start: datetime,
              end_minute: datetime, starts: list[datetime], region: str, answers: dict, result: FetchResult) -> None:
        """One GetMetricData request (following NextToken): per query, the sum of its whole minutes from its own
        step start on, which minutes had datapoints, and the StatusCode CloudWatch gave."""
        failure = (f"CloudWatch did not return SageMaker invocation metrics in {region} ({{detail}}); "
                   "the rollouts it was asked about were not judged this pass.")
        for series in self._metric_data(metric_queries, start, end_minute, region, failure, result):
            where = ids.get(series.get("Id", ""))
            if where is None:
                continue
            answer = answers.setdefault(where, _Series())
            since = starts[where[0]]
            for ts, value in zip(series.get("Timestamps", []), series.get("Values", [])):
                at = ts.astimezone(timezone.utc)
                if since <= at < end_minute:
                    answer.total += value
                    answer.minutes.add(at)
                    if value and not math.isnan(value):
                        answer.busy.add(at)
            # A real answer always carries StatusCode; one without it is taken as complete.
            answer.status = series.get("StatusCode") or "Complete"
            if answer.status in ("InternalError", "Forbidden"):
                answer.failed_status = answer.status


    def _metric_data(self, queries: list[dict], start: datetime, end: datetime, region: str, failure: str,
                     result: FetchResult | LatencyResult | None = None) -> Iterator[dict]:
        """Every MetricDataResults entry of one GetMetricData request, its NextToken pages followed.

        `failure` is the message of the CloudWatchError raised when a page fails ({detail} is filled in).
        """
        cw = self._clients.client("cloudwatch", region)
        token = None
        while True:
            kwargs = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end, "ScanBy": "TimestampAscending"}
            if token:
                kwargs["NextToken"] = token
            try:
                response = cw.get_metric_data(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                detail = exc.response.get("Error", {}).get("Message", exc) if isinstance(exc, ClientError) else exc
                raise CloudWatchError(failure.format(detail=detail)) from None
            finally:
                if result is not None:
                    result.calls += 1
            yield from response.get("MetricDataResults", [])
            token = response.get("NextToken")
            if not token:
                return


    def fetch_series(self, endpoint: str, variants: Iterable[str], region: str, *, start: datetime, end: datetime,
                     period: int = 3600) -> dict[tuple[str, str], dict[datetime, float]]:
        """Per-period sums of Invocations, Invocation5XXErrors and Invocation4XXErrors of each variant, for charts:
        {(variant, metric name): {period start (UTC): sum}}. A period without a datapoint is absent (SageMaker
        publishes nothing for a period without requests). One GetMetricData request (pages followed) for up to
        166 variants; raises CloudWatchError naming CloudWatch and the endpoint."""
        variants = list(dict.fromkeys(variants))
        ids = {f"s{k}": (variant, metric) for k, (variant, metric) in
               enumerate((v, m) for v in variants for m in METRICS)}
        if len(ids) > MAX_QUERIES_PER_CALL:
            raise ValueError(f"{len(variants)} variants need more than one GetMetricData call")
        queries = [_metric_query(qid, endpoint, variant, metric, period) for qid, (variant, metric) in ids.items()]
        series: dict[tuple[str, str], dict[datetime, float]] = {item: {} for item in ids.values()}
        failure = f"CloudWatch did not return the invocation metrics of endpoint {endpoint} in {region} ({{detail}})"
        for result in self._metric_data(queries, start, end, region, failure):
            item = ids.get(result.get("Id", ""))
            if item is None:
                continue
            for ts, value in zip(result.get("Timestamps", []), result.get("Values", [])):
                at = ts.astimezone(timezone.utc)
                series[item][at] = series[item].get(at, 0.0) + value
        return series


    def fetch_utilization(self, endpoint: str, variant: str, region: str, *, start: datetime, end: datetime,
                          period: int = 300) -> dict[tuple[str, str], list[float]]:
        """A variant's CPUUtilization and MemoryUtilization (namespace /aws/sagemaker/Endpoints, percent; CPU summed
        over the instance's cores), per-period Maximum and Average, for right-sizing: {(metric, stat): values}.
        Percentiles are not asked for (moto has none): the caller takes them from these. Raises CloudWatchError."""
        ids = {f"u{k}": (metric, stat) for k, (metric, stat) in enumerate(
            (m, s) for m in UTILIZATION_METRICS for s in ("Maximum", "Average"))}
        dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
        queries = [{"Id": qid, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": UTILIZATION_NAMESPACE, "MetricName": metric, "Dimensions": dims},
            "Period": period, "Stat": stat}} for qid, (metric, stat) in ids.items()]
        out: dict[tuple[str, str], list[float]] = {item: [] for item in ids.values()}
        failure = (f"CloudWatch did not return the CPU and memory use of `{variant}` on endpoint `{endpoint}` in "
                   f"{region} ({{detail}}); it was not sized")
        for result in self._metric_data(queries, start, end, region, failure):
            item = ids.get(result.get("Id", ""))
            if item is not None:
                out[item].extend(v for v in result.get("Values", []) if not math.isnan(v))
        return out
