"""The web process at its edges, as a real process: bodies above MODELBOT_MAX_BODY_BYTES are refused before they
are read, and Airflow credentials written into AIRFLOW_URL reach neither Slack nor the log."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse

import pytest
import requests

from sandbox.scripted_airflow import FakeAirflow, run_json
from tests.conftest import MODELS_TOML
from tests.harness import SIGNING_SECRET, AppProcess, app_env, sign, wait_until

pytestmark = pytest.mark.e2e

MAX_BODY = 64 * 1024
SECRET = "pa55-Wh0le-Wor1d"
LOGIN = "modelbot"


@pytest.fixture(scope="module")
def airflow():
    fake = FakeAirflow().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def running(tmp_path_factory, moto_url, slack_server, airflow):
    """One app process (SQLite: nothing here depends on the store) with a small body limit and an AIRFLOW_URL that
    carries its login."""
    directory = tmp_path_factory.mktemp("edges")
    models = directory / "models.toml"
    models.write_text(MODELS_TOML)
    env = app_env(slack=slack_server, moto_url=moto_url, database_url=f"sqlite:///{directory / 'm.db'}",
                  models_file=models, MODELBOT_MAX_BODY_BYTES=str(MAX_BODY), MODELBOT_COMMAND_PROCESSES="0",
                  AIRFLOW_URL=f"http://{LOGIN}:{SECRET}@127.0.0.1:{airflow.port}")
    app = AppProcess(env, directory / "app.log").start()
    yield app
    app.stop()


@pytest.fixture
def app(running, slack, airflow):
    airflow.routes.clear()
    airflow.seen.clear()
    return running


# ---------------------------------------------------------------- the body limit

def raw_exchange(port: int, head: bytes, chunks=(), timeout: float = 10) -> tuple[int, bytes]:
    """Sends a request by hand (the head, then the body chunks as far as the server takes them) and reads the
    response's status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):  # the server answered and closed without reading it all
            pass
        data = b""
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                break
            data += more
        head_part, _, body = data.partition(b"\r\n\r\n")
        lines = head_part.decode("latin-1").split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
        while len(body) < length:
            more = sock.recv(65536)
            if not more:
                break
            body += more
        return int(lines[0].split()[1]), body


def post_head(port: int, headers: dict[str, str]) -> bytes:
    lines = [f"POST /slack/events HTTP/1.1", f"Host: 127.0.0.1:{port}",
             "Content-Type: application/x-www-form-urlencoded"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(body: bytes, size: int = 8192) -> list[bytes]:
    parts = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size)]
    return parts + [b"0\r\n\r\n"]


def help_form(padding: int = 0) -> bytes:
    form = {"team_id": "T0TEAM", "channel_id": "C0CHURN", "user_id": "U0ALICE", "command": "/model", "text": "help",
            "response_url": "http://127.0.0.1:9/unused", "trigger_id": "1.2.3", "api_app_id": "A0MODELBOT"}
    if padding:
        form["padding"] = "x" * padding  # a field Bolt ignores, covered by the signature like the rest
    return urllib.parse.urlencode(form).encode()


def test_a_declared_body_above_the_limit_is_refused_unread(app):
    port = int(app.url.rsplit(":", 1)[1])
    started = time.monotonic()
    # Ten gigabytes announced, not one byte sent: an answer at all shows nothing waited for the body.
    status, body = raw_exchange(port, post_head(port, {"Content-Length": str(10 * 1024 ** 3)}))
    assert status == 413 and time.monotonic() - started < 5
    assert b"MODELBOT_MAX_BODY_BYTES=65536" in body and b"not read" in body


def test_a_chunked_body_is_read_no_further_than_the_limit(app):
    port = int(app.url.rsplit(":", 1)[1])
    body = help_form(padding=4 * MAX_BODY)
    status, answer = raw_exchange(port, post_head(port, {"Transfer-Encoding": "chunked", **sign(body)}), chunked(body))
    assert status == 413 and b"chunked" in answer
    metrics = requests.get(app.url + "/metrics", timeout=5).text
    assert 'modelbot_http_requests_total{path="/slack/events",status="413"}' in metrics


def test_slacks_requests_within_the_limit_are_served_either_way(app):
    port = int(app.url.rsplit(":", 1)[1])
    near_limit = help_form(padding=MAX_BODY - 1024)
    assert MAX_BODY - 1024 < len(near_limit) <= MAX_BODY
    resp = requests.post(app.url + "/slack/events", data=near_limit, timeout=10,
                         headers={"Content-Type": "application/x-www-form-urlencoded", **sign(near_limit)})
    assert resp.status_code == 200 and "/model help" in resp.json()["text"]
    # A proxy that re-chunks Slack's request: the body is read (bounded) and handed to Bolt with its length.
    small = help_form()
    status, answer = raw_exchange(port, post_head(port, {"Transfer-Encoding": "chunked", **sign(small)}),
                                  chunked(small, 100))
    assert status == 200 and "/model help" in json.loads(answer)["text"]
    # Signed with another secret: still Bolt's 401, the limit changes nothing about who may call.
    status, _ = raw_exchange(port, post_head(port, {"Content-Length": str(len(small)),
                                                    **sign(small, "not-" + SIGNING_SECRET)}), [small])
    assert status == 401


# ---------------------------------------------------------------- Airflow credentials in AIRFLOW_URL

# A DAGResponse as Airflow 3.3 sends it (the fields the client requires).
DAG = {"dag_display_name": "churn_lifecycle", "dag_id": "churn_lifecycle", "file_token": "t", "fileloc": "/dags/x.py",
       "has_import_errors": False, "has_task_concurrency_limits": False, "is_backfillable": False, "is_paused": False,
       "is_stale": False, "max_active_tasks": 16, "max_consecutive_failed_dag_runs": 0, "owners": ["ml"], "tags": [],
       "timetable_partitioned": False, "timetable_periodic": False}


def retrain(app, slack) -> str:
    _, rid = app.command("retrain churn", slack=slack)
    records = wait_until(lambda: slack.responses_for(rid), timeout=30, message="the retrain's answer")
    return records[-1].body.get("text", "")


def assert_nowhere(app, slack) -> None:
    seen = repr(slack.calls) + repr(slack.responses) + requests.get(app.url + "/healthz", timeout=5).text
    assert SECRET not in seen
    assert SECRET not in app.log()


def test_the_login_in_airflow_url_is_used_and_a_refusal_does_not_show_it(app, slack, airflow):
    airflow.routes[("POST", "/auth/token")] = lambda seen: (401, {"detail": "Invalid credentials"})
    text = retrain(app, slack)
    assert f"Airflow at http://127.0.0.1:{airflow.port} rejected the login of AIRFLOW_USERNAME `{LOGIN}`" in text
    # The URL's user and password were the login modelbot tried.
    assert [c.body for c in airflow.calls("POST", "/auth/token")] == [{"username": LOGIN, "password": SECRET}]
    assert_nowhere(app, slack)


def test_run_links_and_the_runs_thread_carry_no_credentials(app, slack, airflow):
    airflow.routes[("POST", "/auth/token")] = lambda seen: (201, {"access_token": "tok"})
    airflow.routes[("GET", "/api/v2/dags/churn_lifecycle")] = lambda seen: (200, DAG)
    airflow.routes[("POST", "/api/v2/dags/churn_lifecycle/dagRuns")] = lambda seen: (
        200, run_json("churn_lifecycle", seen.body["dag_run_id"]))
    text = retrain(app, slack)
    assert f"<http://127.0.0.1:{airflow.port}/dags/churn_lifecycle/runs/modelbot__" in text
    parent = wait_until(lambda: slack.messages("C0CHURN"), timeout=15, message="the run's thread")[0]
    assert f"http://127.0.0.1:{airflow.port}/dags/churn_lifecycle/runs/" in json.dumps(parent)
    assert all(c.authorization == "Bearer tok" for c in airflow.seen if c.path.startswith("/api/"))
    assert_nowhere(app, slack)
