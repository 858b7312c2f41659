"""`python -m jobs`: the worker; `python -m jobs --once`: one pass of every job, then exit.

Every job runs in its own thread, on its own clock: the rollout controller every MODELBOT_ROLLOUT_TICK_SECONDS
(default: MODELBOT_JOB_INTERVAL_SECONDS), the others every MODELBOT_JOB_INTERVAL_SECONDS. A trickling price
download, a paging retry or Slack's Retry-After sleep holds only its own job's thread.

Two workers may run at once (a deploy overlap, a cron `--once` beside the loop): each job takes its own lease
in the database first, so the same job never runs twice at the same moment. A lease lasts
MODELBOT_JOB_LEASE_SECONDS (default 30) and is renewed while its pass runs, so a worker killed mid-pass hands
its jobs over within that time, however long a healthy pass takes.
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
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType

from bot import metrics
from bot.config import ConfigError, load_settings
from bot.registry import RegistryError
from bot.store.foundation import acquire_lease, release_lease, renew_lease
from jobs import CONTROLLER, DEFAULT_MAX_PASS_SECONDS, MAX_PASS_SECONDS, MODULES

log = logging.getLogger("modelbot.jobs")

TICK_ENV = "MODELBOT_ROLLOUT_TICK_SECONDS"
LEASE_ENV = "MODELBOT_JOB_LEASE_SECONDS"
METRICS_PORT_ENV = "MODELBOT_WORKER_METRICS_PORT"
DEFAULT_LEASE_SECONDS = 30.0


def _positive_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be more than 0 seconds")
    return value


@dataclass(frozen=True)
class Job:
    name: str
    module: ModuleType
    interval: float
    max_pass: float


def load_jobs(interval: float, tick: float) -> list[Job]:
    jobs = []
    for module_name in MODULES:
        module = importlib.import_module(f"jobs.{module_name}")
        jobs.append(Job(name=module.NAME, module=module, interval=tick if module_name == CONTROLLER else interval,
                        max_pass=MAX_PASS_SECONDS.get(module_name, DEFAULT_MAX_PASS_SECONDS)))
    return jobs


class Leases:
    """The leases this worker holds. One keeper thread renews each while its pass runs (up to the job's
    max_pass), so the lease's time to live bounds how long a dead worker blocks a job, not how long a pass
    may take."""

    def __init__(self, store, holder: str, ttl: float):
        self.store, self.holder, self.ttl = store, holder, ttl
        self._held: dict[str, float] = {}  # job -> monotonic time after which it is no longer renewed
        self._lock = threading.Lock()

    def acquire(self, job: Job) -> bool:
        with self.store.session() as s:
            got = acquire_lease(s, job.name, self.holder, timedelta(seconds=self.ttl))
        if got:
            with self._lock:
                self._held[job.name] = time.monotonic() + job.max_pass
        return got

    def release(self, job: Job) -> None:
        with self._lock:
            self._held.pop(job.name, None)
        with self.store.session() as s:
            release_lease(s, job.name, self.holder)

    def renew(self) -> None:
        now = time.monotonic()
        with self._lock:
            names = [name for name, until in self._held.items() if now < until]
        for name in names:
            try:
                with self.store.session() as s:
                    # Only a lease still ours: never re-take one that was just released. On the database's clock.
                    renew_lease(s, name, self.holder, timedelta(seconds=self.ttl))
            except Exception:  # the next renewal tries again; the lease is only lost if all of them fail
                log.exception("renewing the lease of job %s failed", name)

    def keep(self, stop: threading.Event) -> None:
        while not stop.wait(self.ttl / 3):
            self.renew()


def run_job(services, leases: Leases, job: Job) -> str:
    """One pass of one job under its lease; returns its one-line summary (never raises)."""
    try:
        got = leases.acquire(job)
    except Exception as exc:
        log.exception("job %s: its lease could not be taken", job.name)
        metrics.JOB_RUNS.labels(job.name, "failed").inc()
        return f"failed: the lease could not be taken ({type(exc).__name__}: {exc})"
    if not got:
        metrics.JOB_RUNS.labels(job.name, "skipped").inc()
        return "skipped: another worker is running it"
    started = time.monotonic()
    try:
        try:
            with services.store.session() as s:
                metrics.record_job_started(s, job.name, leases.holder)
            summary = job.module.run_once(services) or "ok"
            with services.store.session() as s:
                metrics.record_job_completed(s, job.name, leases.holder)
            metrics.JOB_RUNS.labels(job.name, "ok").inc()
            return summary
        except Exception as exc:  # one failing job must not stop the others
            log.exception("job %s failed", job.name)
            metrics.JOB_RUNS.labels(job.name, "failed").inc()
            return f"failed: {type(exc).__name__}: {exc}"
        finally:
            metrics.JOB_SECONDS.labels(job.name).observe(time.monotonic() - started)
    finally:
        try:
            leases.release(job)
        except Exception:  # it lapses by itself within the lease's time to live
            log.exception("job %s: releasing its lease failed", job.name)


def run_pass(services, leases: Leases, jobs: list[Job]) -> dict[str, str]:
    return {job.name: run_job(services, leases, job) for job in jobs}


def job_loop(services, leases: Leases, job: Job, stop: threading.Event) -> None:
    log.info("job %s runs every %ss", job.name, job.interval)
    while not stop.is_set():
        started = time.monotonic()
        summary = run_job(services, leases, job)
        took = time.monotonic() - started
        log.info("%s: %s (%.2fs)", job.name, summary, took)
        stop.wait(max(0.0, job.interval - took))


def serve_metrics(port: int, store, bind: str = "0.0.0.0") -> ThreadingHTTPServer:
    """This worker's own counters and histograms (and the shared job times) on GET /metrics, on the interface
    MODELBOT_BIND names, as the web process's port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = metrics.exposition(store)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # scrapes are not worth a log line each
            pass

    server_class = ThreadingHTTPServer
    if ":" in bind:  # an IPv6 address, e.g. "::" or "::1"
        server_class = type("ThreadingHTTPServer6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
    server = server_class((bind, port), Handler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server


def _warm_aws_clients(services) -> None:
    """Build the controller's boto3 clients before its first tick: building one loads the service's model
    (seconds on a busy machine), a cost that would otherwise fall on the first rollback."""
    regions = {m.region for m in services.registry.models.values()} | {services.registry.defaults.region}
    for region in sorted(regions):
        for service in ("cloudwatch", "sagemaker"):
            try:
                services.aws_clients.client(service, region)
            except Exception:  # the controller says what is wrong when it needs the client
                log.exception("the %s client for %s could not be built in advance", service, region)


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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s")
    try:
        settings = load_settings()
        interval = settings.MODELBOT_JOB_INTERVAL_SECONDS
        tick = _positive_env(TICK_ENV, interval)
        lease_ttl = _positive_env(LEASE_ENV, DEFAULT_LEASE_SECONDS)
        metrics_port = os.environ.get(METRICS_PORT_ENV, "").strip()
        if metrics_port and not metrics_port.isdigit():
            raise ConfigError(f"{METRICS_PORT_ENV}={metrics_port!r} is not a port number")
        from bot.services import Services

        services = Services.from_settings(settings, migrate=True)
    except (ConfigError, RegistryError) as exc:
        print(f"modelbot worker cannot start:\n  {exc}", file=sys.stderr)
        return 2
    holder = f"{socket.gethostname()}:{os.getpid()}"
    jobs = load_jobs(interval, tick)
    leases = Leases(services.store, holder, lease_ttl)
    stop = threading.Event()
    keeper = threading.Thread(target=leases.keep, args=(stop,), name="lease-keeper", daemon=True)
    keeper.start()
    if args.once:
        try:
            results = run_pass(services, leases, jobs)
        finally:
            stop.set()
        for name, summary in results.items():
            print(f"{name}: {summary}")
        return 1 if any(v.startswith("failed") for v in results.values()) else 0

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if metrics_port:
        serve_metrics(int(metrics_port), services.store, settings.MODELBOT_BIND)
        log.info("worker metrics on %s:%s/metrics", settings.MODELBOT_BIND, metrics_port)
    threads = [threading.Thread(target=job_loop, args=(services, leases, job, stop), name=job.name, daemon=True)
               for job in jobs]
    # The controller and PagerDuty's delivery start at once: a worker restarted after a crash must not spend
    # its first seconds on fonts while a rollout waits to be judged or a rollback's page waits to reach
    # PagerDuty (neither draws; charts use matplotlib's object API, safe beside the warm-up).
    first = {CONTROLLER, "pagerduty_delivery"}
    threads.sort(key=lambda t: t.name != CONTROLLER)
    _warm_aws_clients(services.for_controller)
    for t in threads:
        if t.name in first:
            t.start()
    # Before the other jobs' first pass, so the first chart of a run is not also the one that loads the fonts.
    # Not for --once: a single pass pays the same cost whether it warms first or draws first.
    _warm_charts()
    for t in threads:
        if t.name not in first:
            t.start()
    log.info("worker %s running %d jobs, each on its own thread; rollout tick %ss, others every %ss, "
             "leases of %ss", holder, len(jobs), tick, interval, lease_ttl)
    stop.wait()
    # A pass in progress finishes on its own (every step is safe to cut short, and leases lapse); give the
    # threads a moment so a clean stop usually releases them.
    deadline = time.monotonic() + 10
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
