"""With SLACK_APP_TOKEN set, modelbot connects over Socket Mode instead of serving HTTP for Slack."""

from __future__ import annotations

import queue
import time

import pytest
import requests

from tests.harness import AppProcess, app_env, wait_until
from sandbox.socket_mode_peer import SocketModePeer

pytestmark = pytest.mark.e2e


def test_slash_command_over_socket_mode(tmp_path, moto_url, slack, models_file):
    peer = SocketModePeer()
    slack.socket_mode_url = peer.url
    env = app_env(slack=slack, moto_url=moto_url, database_url=f"sqlite:///{tmp_path / 'm.db'}",
                  models_file=models_file, SLACK_APP_TOKEN="xapp-1-test")
    del env["SLACK_SIGNING_SECRET"]  # not needed in Socket Mode
    app = AppProcess(env, tmp_path / "app.log").start()
    try:
        assert requests.get(app.url + "/healthz", timeout=5).json()["integrations"]["slack"] == "socket mode"
        assert peer.connected.wait(15), app.log()
        envelope_id = peer.send_slash_command({
            "command": "/model", "text": "help", "user_id": "U0ALICE", "channel_id": "C0CHURN",
            "team_id": "T0TEAM", "response_url": slack.response_url("sm"), "trigger_id": "1.2",
        })
        deadline = time.monotonic() + 15
        while True:
            ack = peer.acks.get(timeout=max(0.1, deadline - time.monotonic()))
            if ack.get("envelope_id") == envelope_id:
                break
        assert "/model status" in ack["payload"]["text"]
        assert wait_until(lambda: slack.calls_to("apps.connections.open"), message="apps.connections.open")
    except queue.Empty:
        raise AssertionError(f"no ack over Socket Mode:\n{app.log()}")
    finally:
        app.stop()
        peer.stop()
        slack.socket_mode_url = None
