"""Background work. Each job module exposes NAME and run_once(services) -> str (a one-line summary).

`python -m jobs` runs every job in its own thread, on its own clock and its own lease (jobs/__main__.py), so a
slow job (a trickling price download, Slack's Retry-After, a paging retry) never delays another; above all, the
rollout controller's tick is never late because of something else.
"""

from __future__ import annotations

import pkgutil

# `python -m jobs --once` runs the jobs in this order; a job module not named here (any module of this
# package with NAME and run_once) runs after them, in name order, so a new job is scheduled by being added.
# Delivery comes after the controller so a transition's messages go out in the same pass.
_ORDER: list[str] = ["page_escalation", "run_watcher", "rollout_controller", "outbox_delivery",
                     "model_registry_sync", "endpoint_snapshot", "price_refresh"]


def _job_modules() -> list[str]:
    present = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    return [m for m in _ORDER if m in present] + sorted(present - set(_ORDER))


MODULES: list[str] = _job_modules()

# The job that ticks on MODELBOT_ROLLOUT_TICK_SECONDS rather than MODELBOT_JOB_INTERVAL_SECONDS.
CONTROLLER = "rollout_controller"

# How long one pass may keep renewing its lease. Past this the pass is presumed stuck: its lease lapses and
# another worker may run the job (every job is safe to run twice at once; the lease only saves the work).
# price_refresh: several regions, each bounded by the bulk download deadline.
MAX_PASS_SECONDS: dict[str, float] = {"rollout_controller": 300, "price_refresh": 3600}
DEFAULT_MAX_PASS_SECONDS = 900
