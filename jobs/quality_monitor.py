"""Measures every model with a `[models.X.quality]` table: reads what is new in its captured predictions and its
labels, recomputes the days that changed, judges each variant's window against its reference, and queues the
decay and recovery messages in the Slack outbox (outbox_delivery posts them).

A model is measured at most every MODELBOT_QUALITY_INTERVAL_SECONDS (default 300: quality moves over days, and
each pass lists S3 prefixes and reads the endpoint's config); the sandbox sets it lower. One pass of one model
stops at its time budget and goes on next time, so a backlog never holds the worker's lease for long.
"""

from __future__ import annotations

import os
import time

from bot.config import ConfigError
from bot.quality import service as quality
from bot.quality.measure import PASS_BUDGET_SECONDS
from bot.store.base import utcnow

NAME = "quality_monitor"
INTERVAL_ENV = "MODELBOT_QUALITY_INTERVAL_SECONDS"
DEFAULT_INTERVAL_SECONDS = 300.0
# Well within the job's lease limit (jobs.DEFAULT_MAX_PASS_SECONDS): models past it are measured next pass.
JOB_BUDGET_SECONDS = 600.0


def interval_seconds() -> float:
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{INTERVAL_ENV}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise ConfigError(f"{INTERVAL_ENV}={raw!r} must be 0 or more seconds")
    return value


def run_once(services) -> str:
    models = quality.measured_models(services)
    if not models:
        return "no model has a [models.X.quality] table"
    interval, now = interval_seconds(), utcnow()
    deadline = time.monotonic() + JOB_BUDGET_SECONDS
    lines, later = [], 0
    for model in models:
        if not quality.due(services, model, interval, now):
            continue
        left = deadline - time.monotonic()
        if left < 10:
            later += 1
            continue
        lines.append(quality.measure_model(services, model, budget=min(left, PASS_BUDGET_SECONDS)))
    if later:
        lines.append(f"{later} models wait for the next pass (this one used its {JOB_BUDGET_SECONDS:g} s)")
    if not lines:
        return f"{len(models)} models measured within the last {interval:g} s"
    return "; ".join(lines)
