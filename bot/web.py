"""The WSGI application: POST /slack/events (Bolt), GET /healthz, GET /metrics; served by gunicorn."""

from __future__ import annotations

import gc
import io
import json
import logging
import sys
import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot import metrics
from bot.paging import service as pager
from bot.services import Services

log = logging.getLogger(__name__)

KNOWN_PATHS = {"/slack/events", "/healthz", "/metrics"}


class WebApp:
    def __init__(self, services: Services, bolt_app: App):
        self.services = services
        self.slack = SlackRequestHandler(bolt_app, path="/slack/events")
        # In Socket Mode Slack talks over the socket: the HTTP port serves only /healthz and /metrics, so a
        # forged request from anyone who can reach the port acts on nothing.
        self.serves_slack = not services.settings.socket_mode
        self.max_body = services.settings.MODELBOT_MAX_BODY_BYTES

    def health(self) -> tuple[str, dict]:
        report: dict = {"integrations": self.services.integrations()}
        deferral = self.services.command_deferral
        if deferral is not None:
            report["command_processes"] = "ready" if deferral.ready() else "starting"
        try:
            self.services.store.ping()
            report["database"] = "ok"
            status = "200 OK"
        except Exception as exc:  # the point of a health check is to report, not raise
            # The class only: a driver's message can carry the host, the user or the whole URL.
            report["database"] = f"unreachable ({type(exc).__name__})"
            status = "503 Service Unavailable"
        degraded = not status.startswith("200")
        if not degraded:
            try:
                owed = pager.owed_too_long(self.services)
            except Exception as exc:
                owed, report["pages"] = [], f"unreadable ({type(exc).__name__})"
                degraded = True
            if owed:
                # A page nobody has received for minutes is the thing a human must hear about.
                report["pages_owed"] = owed
                degraded = True
        report["status"] = "degraded" if degraded else "ok"
        return status, report

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        started = time.perf_counter()
        label = path if path in KNOWN_PATHS else "other"
        status_holder: list[str] = []

        def recording_start_response(status, headers, exc_info=None):
            status_holder.append(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        try:
            refusal = self._declared_length_refusal(environ)
            if refusal:
                return self._plain(recording_start_response, *refusal)
            if path == "/slack/events":
                if not self.serves_slack:
                    return self._plain(recording_start_response, "401 Unauthorized",
                                       "Socket Mode: Slack's requests are taken over the socket only\n")
                if method != "POST":
                    return self._plain(recording_start_response, "405 Method Not Allowed", "POST only\n")
                refusal = self._read_chunked_body(environ)
                if refusal:
                    return self._plain(recording_start_response, *refusal)
                return self.slack(environ, recording_start_response)
            if path == "/healthz" and method == "GET":
                status, report = self.health()
                body = json.dumps(report).encode()
                recording_start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
                return [body]
            if path == "/metrics" and method == "GET":
                body = metrics.exposition(self.services.store)
                recording_start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
                return [body]
            return self._plain(recording_start_response, "404 Not Found", "not found\n")
        finally:
            metrics.HTTP_LATENCY.labels(label).observe(time.perf_counter() - started)
            metrics.HTTP_REQUESTS.labels(label, status_holder[0] if status_holder else "500").inc()

    def _too_large(self, environ, size: str) -> tuple[str, str]:
        log.warning("refused a request body of %s to %s from %s: MODELBOT_MAX_BODY_BYTES is %d", size,
                    environ.get("PATH_INFO", ""), environ.get("REMOTE_ADDR", "?"), self.max_body)
        return ("413 Content Too Large",
                f"request body of {size} is larger than this server takes (MODELBOT_MAX_BODY_BYTES={self.max_body}); "
                "it was not read\n")

    def _declared_length_refusal(self, environ) -> tuple[str, str] | None:
        """A Content-Length above the limit is refused before a byte of the body is read: Bolt would read it all
        into memory before checking who sent it."""
        declared = environ.get("CONTENT_LENGTH") or ""
        if not declared:
            return None
        if not declared.isdigit():
            return "400 Bad Request", "Content-Length is not a number of bytes\n"
        if int(declared) > self.max_body:
            return self._too_large(environ, f"{int(declared)} bytes")
        return None

    def _read_chunked_body(self, environ) -> tuple[str, str] | None:
        """A body without Content-Length (chunked) is read up to one byte past the limit, never further: past it,
        413; within it, Bolt gets the body with its length (it reads Content-Length bytes)."""
        if environ.get("CONTENT_LENGTH") or "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return None
        body = environ["wsgi.input"].read(self.max_body + 1)
        if len(body) > self.max_body:
            return self._too_large(environ, f"more than {self.max_body} bytes (chunked)")
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return None

    @staticmethod
    def _plain(start_response, status: str, text: str):
        body = text.encode()
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]


def serve(app_factory, *, port: int, workers: int, threads: int, bind: str = "0.0.0.0") -> None:
    """Run the WSGI app under gunicorn (gthread workers): a production server, not Bolt's dev server."""
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("timeout", 60)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("keepalive", 5)
            self.cfg.set("accesslog", None)
            self.cfg.set("errorlog", "-")
            self.cfg.set("loglevel", "warning")

        def load(self):
            # A request thread waiting to ack should get the GIL soon, not after 5 ms slices of post-ack work.
            sys.setswitchinterval(0.0005)
            app = app_factory()
            # Everything built so far (pandas, matplotlib, boto3 models, the app) lives for the process: keep
            # it out of the collector's scans, or each full collection stalls the acks behind it.
            gc.collect()
            gc.freeze()
            return app

    _Gunicorn().run()
