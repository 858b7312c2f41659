"""Prometheus metrics served on GET /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

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
