"""modelbot as a process in HTTP mode, driven by signed requests exactly as Slack sends them."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from bot.store import Store
from bot.store.foundation import Thread
from tests.conftest import MODELS_TOML, provision_database
from tests.endpoints import create_endpoint
from tests.harness import ROOT, AppProcess, app_env, free_port, sign, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def running(request, tmp_path_factory, moto_url, slack_server):
    """One app process per database kind for the module."""
    directory = tmp_path_factory.mktemp(f"app-{request.param}")
    url, cleanup = provision_database(request.param, directory)
    models = directory / "models.toml"
    models.write_text(MODELS_TOML)
    env = app_env(slack=slack_server, moto_url=moto_url, database_url=url, models_file=models)
    app = AppProcess(env, directory / "app.log").start()
    app.database_url = url
    yield app
    app.stop()
    cleanup()


@pytest.fixture
def app(running, aws, slack):
    return running


def reply_text(slack, rid: str, timeout: float = 15) -> str:
    records = wait_until(lambda: slack.responses_for(rid), timeout=timeout, message=f"a response_url post to {rid}")
    return records[-1].body.get("text", "")


def test_help_lists_every_subcommand(app, slack):
    resp, _ = app.command("help", slack=slack)
    assert resp.status_code == 200
    text = resp.json()["text"]
    for usage in ("/model help", "/model status [&lt;model&gt;]"):
        assert usage in text
    assert resp.json()["response_type"] == "ephemeral"


# The list's variants, weights and missing endpoint: tests/status/test_status_e2e.py (moved with issue 12).


def test_status_of_one_model(app, slack):
    create_endpoint("fraud-prod", {"blue": 1.0}, instance_type="ml.c5.xlarge")
    resp, rid = app.command("status fraud", slack=slack)
    assert "Looking up *fraud*" in resp.json()["text"]
    text = reply_text(slack, rid)
    assert "`blue` 100% (ml.c5.xlarge)" in text and "churn" not in text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "no subcommand given"),
        ("stauts", "unknown subcommand `stauts`. Did you mean `status`?"),
        ("status chrun", "unknown model `chrun`. Did you mean `churn`?"),
        ("status churn extra", "unexpected `extra`"),
        ('status "churn', "check your quotes"),
        ("help --force", "unknown option `--force`"),
    ],
)
def test_bad_input_gets_an_ephemeral_usage_message(app, slack, text, expected):
    resp, rid = app.command(text, slack=slack)
    assert resp.status_code == 200
    body = resp.json()
    assert body["response_type"] == "ephemeral"
    assert expected in body["text"] and "Usage:" in body["text"]
    time.sleep(0.2)
    assert slack.responses_for(rid) == []  # nothing ran after the rejection


def test_typed_text_is_escaped_before_it_is_echoed(app, slack):
    for typed, shown in (("<!channel>", "&lt;!channel&gt;"), ("<@U0BOSS>", "&lt;@U0BOSS&gt;")):
        resp, _ = app.command(f"status {typed}", slack=slack)
        text = resp.json()["text"]
        assert typed not in text and f"unknown model `{shown}`" in text
        assert "<model>" not in text  # usage placeholders are escaped too


@pytest.mark.parametrize(
    "how",
    ["unsigned", "wrong secret", "stale"],
)
def test_requests_not_from_slack_get_401_and_change_nothing(app, slack, how):
    kwargs = {
        "unsigned": {"signed": False},
        "wrong secret": {"sign_with": "not-the-secret"},
        "stale": {"timestamp": int(time.time()) - 6 * 60},
    }[how]
    resp, rid = app.command("status", slack=slack, **kwargs)
    assert resp.status_code == 401
    time.sleep(0.3)
    assert slack.responses_for(rid) == []
    assert slack.calls_to("chat.postMessage") == []


def test_health_and_metrics(app, slack):
    health = requests.get(app.url + "/healthz", timeout=5)
    assert health.status_code == 200
    report = health.json()
    assert report["database"] == "ok"
    assert report["integrations"]["airflow"] == "not configured"
    assert report["integrations"]["models"] == "2"
    app.command("help", slack=slack)
    metrics = requests.get(app.url + "/metrics", timeout=5).text
    assert 'modelbot_http_requests_total{path="/slack/events",status="200"}' in metrics
    assert "modelbot_commands_total" in metrics


def test_mention_in_a_thread_acts_on_its_model(app, slack):
    create_endpoint("churn-prod", {"v41": 1.0})
    store = Store(app.database_url)
    with store.session() as s:
        s.add(Thread(kind="run", key=f"churn_lifecycle/run-{time.time_ns()}", model="churn", channel="C0CHURN", ts="1700000000.000100"))
    store.dispose()
    event_id = f"Ev{time.time_ns()}"
    payload = {
        "token": "x", "team_id": "T0TEAM", "api_app_id": "A0MODELBOT", "type": "event_callback",
        "event_id": event_id, "event_time": int(time.time()),
        "event": {"type": "app_mention", "user": "U0ALICE", "text": "<@U0BOT> status", "channel": "C0CHURN",
                  "ts": "1700000001.000200", "thread_ts": "1700000000.000100", "event_ts": "1700000001.000200"},
    }
    assert app.event(payload).status_code == 200
    post = wait_until(lambda: slack.calls_to("chat.postMessage"), timeout=15, message="a thread reply")[0]
    assert post.args["channel"] == "C0CHURN" and post.args["thread_ts"] == "1700000000.000100"
    assert "`v41` 100%" in post.args["text"]
    # Slack redelivers the same event: it is acknowledged and not acted on twice.
    assert app.event(payload).status_code == 200
    time.sleep(0.5)
    assert len(slack.calls_to("chat.postMessage")) == 1


class _SlowProxy(BaseHTTPRequestHandler):
    """Forwards to moto after a delay: SageMaker having a bad day."""

    target = ""
    delay = 4.0

    def do_POST(self):
        time.sleep(self.delay)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        upstream = requests.post(self.target + self.path, data=body, headers=dict(self.headers), timeout=10)
        self.send_response(upstream.status_code)
        for k, v in upstream.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(upstream.content)))
        self.end_headers()
        self.wfile.write(upstream.content)

    def log_message(self, *args):
        pass


def test_status_acks_within_3s_when_sagemaker_is_slow(tmp_path, moto_url, aws, slack):
    create_endpoint("churn-prod", {"v41": 1.0})
    handler = type("Slow", (_SlowProxy,), {"target": moto_url})
    proxy = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    models = tmp_path / "models.toml"
    models.write_text(MODELS_TOML)
    env = app_env(slack=slack, moto_url=f"http://127.0.0.1:{proxy.server_address[1]}",
                  database_url=f"sqlite:///{tmp_path / 'm.db'}", models_file=models)
    app = AppProcess(env, tmp_path / "app.log").start()
    try:
        started = time.monotonic()
        resp, rid = app.command("status churn", slack=slack)
        assert resp.status_code == 200 and time.monotonic() - started < 3
        assert "Looking up" in resp.json()["text"]
        assert "`v41` 100%" in reply_text(slack, rid, timeout=30)
    finally:
        app.stop()
        proxy.shutdown()


def _run_bot(env: dict, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_without_slack_credentials_it_says_exactly_what_to_set(tmp_path, moto_url, slack):
    models = tmp_path / "models.toml"
    models.write_text(MODELS_TOML)
    env = app_env(slack=slack, moto_url=moto_url, database_url=f"sqlite:///{tmp_path}/m.db", models_file=models)
    del env["SLACK_BOT_TOKEN"], env["SLACK_SIGNING_SECRET"]
    result = subprocess.run([sys.executable, "-m", "bot"], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN" in result.stderr and "SLACK_SIGNING_SECRET" in result.stderr
    assert "manifest.json" in result.stderr


def test_a_bad_models_file_stops_the_start_naming_file_model_and_field(tmp_path, moto_url, slack):
    models = tmp_path / "models.toml"
    models.write_text(MODELS_TOML.replace('direction = "minimize"', 'direction = "down"'))
    env = app_env(slack=slack, moto_url=moto_url, database_url=f"sqlite:///{tmp_path}/m.db", models_file=models)
    result = _run_bot(env)
    assert result.returncode == 2
    assert f"{models}: model 'fraud', field 'direction'" in result.stderr
