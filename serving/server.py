"""gunicorn underneath: the app, built and checked once, is forked into the workers.

gthread workers keep connections alive (SageMaker's front end reuses them) and keep answering /ping while a
long predict runs on another thread. gunicorn's own timeout only sees a worker's main loop, which runs on while
a predict hangs, so each worker watches its own predict: past SAGEMAKER_MODEL_SERVER_TIMEOUT the worker exits
and gunicorn forks a fresh one from the loaded model in milliseconds.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from typing import Callable

from gunicorn.app.base import BaseApplication

from serving.settings import Settings

log = logging.getLogger("modelbot.serve")

WATCH_EVERY_SECONDS = 1.0


def run(app_factory: Callable[[], object], settings: Settings, *, watch: Callable[[object], None] | None = None,
        loglevel: str = "info") -> None:
    """Serve `app_factory()` (built once, before the workers fork) until gunicorn is told to stop."""
    built: list = []

    class _Gunicorn(BaseApplication):
        def load_config(self):
            host = settings.host
            self.cfg.set("bind", f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}")
            self.cfg.set("workers", settings.workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", settings.threads)
            # The watchdog ends a hung predict at settings.timeout; gunicorn's own heartbeat is the backstop for a
            # worker whose main loop itself stops (a C extension holding the GIL).
            self.cfg.set("timeout", settings.timeout + 30)
            self.cfg.set("graceful_timeout", 20)
            self.cfg.set("keepalive", 20)
            self.cfg.set("preload_app", True)
            self.cfg.set("accesslog", None)  # the app logs each invocation, with its inference id
            self.cfg.set("errorlog", "-")
            self.cfg.set("loglevel", loglevel)
            self.cfg.set("proc_name", "modelbot-serve")
            if "control_socket_disable" in self.cfg.settings:
                # gunicorn >= 25 opens a control socket at one fixed path per user: several servers on a machine
                # (one per endpoint variant in the sandbox) would take it from each other, and nobody uses it here.
                self.cfg.set("control_socket_disable", True)
            if watch is not None:
                self.cfg.set("post_fork", lambda server, worker: watch(built[0]))

        def load(self):
            if not built:
                built.append(app_factory())
                # The model and everything imported live as long as the process: keep them out of the
                # collector's scans, so workers do not copy the pages a scan would touch.
                gc.collect()
                gc.freeze()
            return built[0]

    _Gunicorn().run()


def watch_predict(app, timeout: float) -> None:
    """In a worker: exit when one predict has run longer than `timeout` seconds (gunicorn replaces the worker)."""

    def loop() -> None:
        while True:
            time.sleep(WATCH_EVERY_SECONDS)
            running = app.predicting
            if running is not None and time.monotonic() - running[0] > timeout:
                log.error("predict has run for over %d s (SAGEMAKER_MODEL_SERVER_TIMEOUT) on inference_id=%s: "
                          "stopping this worker; a fresh one takes its place", timeout, running[1])
                logging.shutdown()
                os._exit(1)

    threading.Thread(target=loop, name="predict-watchdog", daemon=True).start()
