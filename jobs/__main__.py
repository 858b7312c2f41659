"""`python -m jobs`: the worker loop; `python -m jobs --once`: one pass of every job, then exit.

Two workers may run at once (a deploy overlap, a cron `--once` beside the loop): each job takes a lease in
the database first, so the same job never runs twice at the same moment.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from datetime import timedelta

from bot import metrics
from bot.config import ConfigError, load_settings
from bot.registry import RegistryError
from bot.store.foundation import acquire_lease, release_lease
from jobs import MODULES

log = logging.getLogger("modelbot.jobs")


def run_pass(services, holder: str, lease_seconds: float) -> dict[str, str]:
    results: dict[str, str] = {}
    for module_name in MODULES:
        job = importlib.import_module(f"jobs.{module_name}")
        with services.store.session() as s:
            got = acquire_lease(s, job.NAME, holder, timedelta(seconds=lease_seconds))
        if not got:
            results[job.NAME] = "skipped: another worker is running it"
            metrics.JOB_RUNS.labels(job.NAME, "skipped").inc()
            continue
        try:
            results[job.NAME] = job.run_once(services) or "ok"
            metrics.JOB_RUNS.labels(job.NAME, "ok").inc()
        except Exception as exc:  # one failing job must not stop the others
            log.exception("job %s failed", job.NAME)
            results[job.NAME] = f"failed: {type(exc).__name__}: {exc}"
            metrics.JOB_RUNS.labels(job.NAME, "failed").inc()
        finally:
            with services.store.session() as s:
                release_lease(s, job.NAME, holder)
    return results


def _warm_charts() -> None:
    try:
        from charts.fonts import warm_font_cache

        warm_font_cache()
    except Exception:  # charts are evidence, not the worker's job: a broken matplotlib must not stop it
        log.exception("matplotlib's font cache could not be warmed; the first chart will be slower")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs", description="modelbot's background jobs")
    parser.add_argument("--once", action="store_true", help="run one pass of every job, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        from bot.services import Services

        services = Services.from_settings(settings, migrate=True)
    except (ConfigError, RegistryError) as exc:
        print(f"modelbot worker cannot start:\n  {exc}", file=sys.stderr)
        return 2
    holder = f"{socket.gethostname()}:{os.getpid()}"
    interval = settings.MODELBOT_JOB_INTERVAL_SECONDS
    lease = max(60.0, 5 * interval)
    if args.once:
        results = run_pass(services, holder, lease)
        for name, summary in results.items():
            print(f"{name}: {summary}")
        return 1 if any(v.startswith("failed") for v in results.values()) else 0

    # Before the first pass, so the first chart of a run or rollout is not also the one that loads the fonts.
    # Not for --once: a single pass pays the same cost whether it warms first or draws first.
    _warm_charts()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("worker %s running %d jobs every %ss", holder, len(MODULES), interval)
    while not stop.is_set():
        started = time.monotonic()
        for name, summary in run_pass(services, holder, lease).items():
            log.info("%s: %s", name, summary)
        stop.wait(max(0.0, interval - (time.monotonic() - started)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
