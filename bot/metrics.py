"""Prometheus metrics served on GET /metrics.

Counters and histograms are per process. When each background job last started and completed is read from
the shared database instead (the worker records it next to the job's lease, see record_job_*), so the web
process's /metrics shows it for every worker, and it survives a worker's restart.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import select, update

from bot.store.base import utcnow
from bot.store.foundation import JobLease, insert_ignore

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "modelbot_http_requests_total", "HTTP requests by path and status", ["path", "status"], registry=REGISTRY
)
HTTP_LATENCY = Histogram(
    "modelbot_http_request_seconds",
    "Time to answer an HTTP request (for /slack/events: time to ack)",
    ["path"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 3, 5, 10),
    registry=REGISTRY,
)
COMMANDS = Counter(
    "modelbot_commands_total", "/model subcommands by outcome", ["subcommand", "outcome"], registry=REGISTRY
)
JOB_RUNS = Counter("modelbot_job_runs_total", "Job passes by job and outcome", ["job", "outcome"], registry=REGISTRY)
JOB_SECONDS = Histogram(
    "modelbot_job_pass_seconds",
    "Time one pass of a job took, in this worker process",
    ["job"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
    registry=REGISTRY,
)

# Job timing rows live in job_leases beside the leases themselves (no schema change): name "<kind>:<job>",
# holder = the worker, expires_at = the moment.
_STARTED, _COMPLETED = "started:", "completed:"


def _mark(session, name: str, holder: str, at: datetime) -> None:
    insert_ignore(session, JobLease.__table__, {"name": name, "holder": holder, "expires_at": at}, ["name"])
    session.execute(update(JobLease).where(JobLease.name == name).values(holder=holder, expires_at=at))


def record_job_started(session, job: str, holder: str, at: datetime | None = None) -> None:
    _mark(session, _STARTED + job, holder, at or utcnow())


def record_job_completed(session, job: str, holder: str, at: datetime | None = None) -> None:
    _mark(session, _COMPLETED + job, holder, at or utcnow())


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


def job_times(session) -> dict[str, dict[str, tuple[float, str | None]]]:
    """job -> {"started"|"completed": (epoch seconds, worker)}."""
    rows = session.execute(
        select(JobLease.name, JobLease.holder, JobLease.expires_at).where(
            JobLease.name.like(_STARTED + "%") | JobLease.name.like(_COMPLETED + "%")
        )
    )
    times: dict[str, dict[str, tuple[float, str | None]]] = {}
    for name, holder, at in rows:
        if at is None:
            continue
        kind, _, job = name.partition(":")
        times.setdefault(job, {})[kind] = (_epoch(at), holder)
    return times


class JobTimes:
    """A collector that reads the job timing rows from the database at every scrape."""

    def __init__(self, store):
        self.store = store

    def collect(self):
        completed = GaugeMetricFamily(
            "modelbot_job_last_completed_timestamp_seconds",
            "When a pass of the job last completed without error (any worker), Unix time", labels=["job"])
        started = GaugeMetricFamily(
            "modelbot_job_last_started_timestamp_seconds",
            "When a pass of the job last started (any worker), Unix time", labels=["job"])
        duration = GaugeMetricFamily(
            "modelbot_job_last_duration_seconds",
            "How long the job's last completed pass took (absent while a later pass runs or after a failure)",
            labels=["job"])
        try:
            with self.store.session() as s:
                times = job_times(s)
        except Exception as exc:  # a scrape reports what it can; the database's state is /healthz's to tell
            log.warning("job times could not be read from the database for /metrics: %s", type(exc).__name__)
            times = {}
        for job, kinds in sorted(times.items()):
            if "completed" in kinds:
                completed.add_metric([job], kinds["completed"][0])
            if "started" in kinds:
                started.add_metric([job], kinds["started"][0])
            if "completed" in kinds and "started" in kinds and kinds["completed"][0] >= kinds["started"][0]:
                duration.add_metric([job], kinds["completed"][0] - kinds["started"][0])
        yield from (completed, started, duration)


def exposition(store=None) -> bytes:
    """This process's metrics, plus the job times from the database when a store is given."""
    body = generate_latest(REGISTRY)
    if store is None:
        return body
    jobs = CollectorRegistry(auto_describe=False)
    jobs.register(JobTimes(store))
    return body + generate_latest(jobs)
