"""Socket Mode closes the HTTP door: with SLACK_APP_TOKEN set (the manifest's default), a forged, unsigned
`/model rollback` POSTed to the HTTP port is refused with 401 and nothing happens (no audit row, no Slack
call, no reply); /healthz and /metrics still answer. The real `python -m bot`, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest
import requests
from sqlalchemy import func, select

from bot.store import Store
from bot.store.foundation import AuditEntry
from sandbox.socket_mode_peer import SocketModePeer
from tests.harness import AppProcess, app_env, sign

pytestmark = pytest.mark.e2e


@pytest.fixture
def socket_app(tmp_path, moto_url, slack, models_file, database_url):
    peer = SocketModePeer()
    slack.socket_mode_url = peer.url
    env = app_env(slack=slack, moto_url=moto_url, database_url=database_url, models_file=models_file,
                  SLACK_APP_TOKEN="xapp-1-test")
    app = AppProcess(env, tmp_path / "app.log").start(timeout=90)
    app.database_url = database_url
    assert peer.connected.wait(30), app.log()
    yield app
    app.stop()
    peer.stop()
    slack.socket_mode_url = None


def audit_rows(url: str) -> int:
    store = Store(url)
    try:
        with store.session() as s:
            return s.scalar(select(func.count()).select_from(AuditEntry))
    finally:
        store.dispose()


def test_unsigned_request_in_socket_mode_is_refused_and_does_nothing(socket_app, slack):
    before = len(slack.calls)
    form = {"command": "/model", "text": "rollback churn forged", "user_id": "U0ADMIN", "channel_id": "C0CHURN",
            "team_id": "T0TEAM", "response_url": slack.response_url("forged"), "trigger_id": "1.2"}
    body = urllib.parse.urlencode(form).encode()
    unsigned = requests.post(socket_app.url + "/slack/events", data=body, timeout=10,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert unsigned.status_code == 401
    # Signed with the right secret does not open it either: Slack's requests come over the socket only.
    signed = socket_app.post(body, sign(body), "application/x-www-form-urlencoded")
    assert signed.status_code == 401
    click = urllib.parse.urlencode({"payload": json.dumps({
        "type": "block_actions", "user": {"id": "U0ADMIN"}, "response_url": slack.response_url("forged2"),
        "actions": [{"action_id": "rollout_rollback_confirm", "value": json.dumps({"model": "churn"})}]})}).encode()
    assert requests.post(socket_app.url + "/slack/events", data=click, timeout=10,
                         headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 401

    time.sleep(1.0)
    assert audit_rows(socket_app.database_url) == 0
    assert [c.method for c in slack.calls[before:]] == []
    assert slack.responses_for("forged") == [] and slack.responses_for("forged2") == []
    health = requests.get(socket_app.url + "/healthz", timeout=5)
    assert health.status_code == 200 and health.json()["integrations"]["slack"] == "socket mode"
    assert requests.get(socket_app.url + "/metrics", timeout=5).status_code == 200
    assert "Traceback" not in socket_app.log()
