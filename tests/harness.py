"""Starting modelbot the way it runs in production, and talking to it the way Slack does."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sign(body: bytes, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def aws_env(moto_url: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def app_env(*, slack, moto_url: str, database_url: str, models_file: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AIRFLOW_", "AWS_", "PAGERDUTY_"))}
    env.update(aws_env(moto_url))
    env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.api_url,
        DATABASE_URL=database_url,
        MODELS_FILE=str(models_file),
        PYTHONUNBUFFERED="1",
        # moto has no Price List API and the bulk file host is not reachable from tests: pricing tests
        # drive the refresh against their own fake instead.
        MODELBOT_PRICE_REFRESH_HOURS="0",
    )
    env.update(extra)
    return env


class AppProcess:
    """`python -m bot` in HTTP mode on a free port, as a real process."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.env = dict(env, PORT=str(self.port))
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> "AppProcess":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot"], cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"modelbot exited with {self.proc.returncode}:\n{self.log()}")
            try:
                health = requests.get(self.url + "/healthz", timeout=1)
                if health.status_code in (200, 503) and health.json().get("command_processes") != "starting":
                    return self
            except (requests.ConnectionError, requests.Timeout):  # gunicorn accepts before its workers serve
                pass
            time.sleep(0.1)
        log = self.log()
        self.stop()  # a process that never answered is not left running behind the failed test
        raise RuntimeError(f"modelbot did not answer /healthz within {timeout}s:\n{log}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def post(self, body: bytes, headers: dict[str, str], content_type: str) -> requests.Response:
        return requests.post(
            self.url + "/slack/events", data=body, headers={"Content-Type": content_type, **headers}, timeout=10
        )

    def command(self, text: str, *, slack, user_id: str = "U0ALICE", channel_id: str = "C0CHURN",
                sign_with: str = SIGNING_SECRET, timestamp: int | None = None, signed: bool = True,
                response_name: str | None = None) -> tuple[requests.Response, str]:
        """A slash command exactly as Slack sends it; returns the HTTP response and the response_url id."""
        rid = response_name or f"r{time.monotonic_ns()}"
        form = {
            "token": "deprecated-verification-token",
            "team_id": "T0TEAM",
            "team_domain": "example",
            "channel_id": channel_id,
            "channel_name": "ml",
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": "/model",
            "text": text,
            "api_app_id": "A0MODELBOT",
            "is_enterprise_install": "false",
            "response_url": slack.response_url(rid),
            "trigger_id": f"{time.time_ns()}.trigger",
        }
        body = urllib.parse.urlencode(form).encode()
        headers = sign(body, sign_with, timestamp) if signed else {}
        return self.post(body, headers, "application/x-www-form-urlencoded"), rid

    def action(self, payload: dict, **kw) -> requests.Response:
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        return self.post(body, sign(body, **kw), "application/x-www-form-urlencoded")

    def event(self, payload: dict, **kw) -> requests.Response:
        body = json.dumps(payload).encode()
        return self.post(body, sign(body, **kw), "application/json")


def run_jobs_once(env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobs", "--once"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def wait_until(predicate, timeout: float = 10, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
