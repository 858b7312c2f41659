"""Shared fault helpers: the worker and the web app as real processes, a price server that trickles, clearly
bad traffic for a rollout, and the rollout fixtures (moto behind the UpdateEndpoint proxy) re-exported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from bot.integrations.cloudwatch import first_full_minute
from tests.harness import ROOT, free_port
from tests.rollout.conftest import churn_endpoint, put_traffic, rollout_aws, t0, weights  # noqa: F401

# Where `python -m jobs` is run from. Pointing it at a checkout of an older commit (with its own jobs/) shows a
# test failing on the old design.
WORKER_ROOT = Path(os.environ.get("MODELBOT_FAULTS_WORKER_ROOT") or ROOT)


class WorkerProcess:
    """`python -m jobs` as a real process, its output in a log file; killable with SIGKILL and restartable."""

    def __init__(self, env: dict[str, str], log_path: Path, name: str = "worker"):
        self.env, self.log_path, self.name = env, log_path, name
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> "WorkerProcess":
        self.starts += 1
        # Append: a restarted worker's log follows the killed one's.
        self._log = open(self.log_path, "ab")
        self._log.write(f"\n===== {self.name} start {self.starts} at {time.time():.3f} =====\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen([sys.executable, "-m", "jobs"], cwd=WORKER_ROOT, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def ready(self) -> bool:
        """Started and its rollout controller thread running (the first thing a worker starts)."""
        if not self.alive():
            return False
        marker = f"===== {self.name} start {self.starts} at "
        log = self.log()
        return "job rollout_controller runs every" in log[log.rfind(marker):]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up, no lease released, whatever was in flight is cut off."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if getattr(self, "_log", None) and not self._log.closed:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class TrickleServer:
    """The AWS bulk price list as a slow network shows it: the region index comes at once, then the region's
    offer file one byte every `every` seconds (each byte arrives well inside any read timeout). The Price
    List Query API (a POST) is refused at once, so modelbot's "auto" source falls back to the bulk file."""

    def __init__(self, every: float = 3.0):
        self.every = every
        self.offer_requests = threading.Event()
        self.bytes_sent = 0
        self._closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path.endswith("/region_index.json"):
                    body = json.dumps({"regions": {r: {"regionCode": r, "currentVersionUrl": f"/offers/{r}.json"}
                                                   for r in ("us-east-1", "eu-west-1")}}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                server.offer_requests.set()
                payload = b'{"formatVersion": "v1.0", "products": {' + b" " * 10_000_000
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    for i in range(len(payload)):
                        self.wfile.write(payload[i:i + 1])
                        self.wfile.flush()
                        server.bytes_sent += 1
                        if server._closing.wait(server.every):
                            return
                except OSError:  # the client gave up: that is the point
                    return

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps({"__type": "AccessDeniedException",
                                   "Message": "not authorized to perform pricing:GetProducts"}).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "TrickleServer":
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()


class HangingSlack:
    """The Slack emulator behind a proxy that, while hanging, reads each request and never answers: every
    client waits out its own timeout, as when Slack (or the network to it) stalls. When released, the held
    connections are closed unanswered and later calls pass through."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self._hanging = threading.Event()
        self._released = threading.Event()
        self.held = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy._hanging.is_set():
                    proxy.held += 1
                    proxy._released.wait(300)
                    self.close_connection = True
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection", "accept-encoding")}
                answer = requests.post(proxy.upstream + self.path, data=raw, headers=headers, timeout=30)
                self.send_response(answer.status_code)
                for k, v in answer.headers.items():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def hang(self) -> None:
        self._released.clear()
        self._hanging.set()

    def release(self) -> None:
        self._hanging.clear()
        self._released.set()

    def start(self) -> "HangingSlack":
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def hanging_slack(slack):
    proxy = HangingSlack(slack.url).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def trickle():
    server = TrickleServer().start()
    yield server
    server.stop()


# A fault test's rollout begins this long ago: the controller judges only whole minutes that are over (the
# minute in progress is not read), so evidence written into the step's past minutes is judged at once instead
# of a minute or two later.
STEP_BACKDATE = timedelta(minutes=3)


def start_rollout(services, slack, model: str, *, endpoint: str, stable: str, candidate: str,
                  run_id: str = "deploy-1", channel: str = "C0CHURN", now: datetime | None = None) -> int:
    """A rollout as a finished deploy task starts it (the run watcher's call), in a run thread of its own; its
    first step counts from `now` (default: STEP_BACKDATE ago)."""
    from bot.rollouts import service as rollouts

    thread_ts = slack.add_message(channel, f"Run {run_id} of {model}", user="U0MODELBOT")
    return rollouts.start_from_deploy(services, model, endpoint=endpoint, stable_variant=stable,
                                      candidate_variant=candidate, run_id=run_id, channel=channel,
                                      thread_ts=thread_ts, now=now or utc_now() - STEP_BACKDATE)


def evidence_minutes(before: datetime, after: datetime) -> list[datetime]:
    """The CloudWatch minutes that count for a step that began between `before` and `after` and that are over
    by `after`: from the first whole minute after `before` up to the last one ended. (A datapoint in an
    earlier minute is simply not counted, nor one in the minute in progress.)"""
    minutes, minute = [], first_full_minute(before)
    while minute + timedelta(minutes=1) <= after:
        minutes.append(minute)
        minute += timedelta(minutes=1)
    return minutes or [first_full_minute(before)]


def put_bad_evidence(endpoint: str, stable: str, candidate: str, minutes: list[datetime],
                     requests_stable: int = 18_000, requests_candidate: int = 2_000) -> None:
    """A clearly worse candidate: 30% 5XX against the stable variant's 0.5%, far past min_requests."""
    for minute in minutes:
        put_traffic(endpoint, stable, minute, requests_stable, errors_5xx=requests_stable // 200)
        put_traffic(endpoint, candidate, minute, requests_candidate, errors_5xx=requests_candidate * 3 // 10)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """One sample from a Prometheus text exposition, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{want}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):].split()[0])
    return None


def scrape(url: str) -> str:
    return requests.get(url + "/metrics", timeout=5).text


__all__ = ["WorkerProcess", "TrickleServer", "HangingSlack", "STEP_BACKDATE", "start_rollout", "evidence_minutes", "put_bad_evidence", "utc_now", "metric_value",
           "scrape", "free_port", "timedelta", "put_traffic", "weights"]
