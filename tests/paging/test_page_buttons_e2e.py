"""The Acknowledge / Resolve buttons through the running app, clicked the way Slack posts a block_actions payload."""

from __future__ import annotations

import time

import pytest

from bot.paging import service as pager
from tests.harness import AppProcess, app_env, wait_until
from tests.paging.conftest import ROUTING_KEY
from tests.paging.test_pager import alerts, block_text, buttons

pytestmark = pytest.mark.e2e


def click(app, slack, *, user: str, message: dict, channel: str, action_id: str):
    """Clicks a button of `message` as rendered in the emulator: the payload carries the button as posted."""
    [button] = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == action_id]
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0EMULATOR"},
        "api_app_id": "A0MODELBOT",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel, "is_ephemeral": False},
        "trigger_id": f"{time.time_ns()}.trigger",
        "team": {"id": "T0EMULATOR", "domain": "example"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "alerts"},
        "message": message,
        "state": {"values": {}},
        "response_url": slack.response_url(),
        "actions": [{**button, "block_id": "page_actions", "action_ts": f"{time.time():.6f}"}],
    }
    response = app.action(payload)
    assert response.status_code == 200
    return response


def current(slack, channel: str, ts: str) -> dict:
    return next(m for m in slack.messages(channel) if m["ts"] == ts)


def test_buttons_acknowledge_and_resolve_through_the_app(make_services, slack, pagerduty, database_url,
                                                        models_file, tmp_path):
    services = make_services()
    thread_ts = services.slack.chat_postMessage(channel="C0CHURN", text="Rollout of churn")["ts"]
    pager.page_rollback(services, model_name="churn", rollout_id=7, reason="5XX up", channel="C0CHURN",
                        thread_ts=thread_ts, automatic=True, actor=None)
    [alert] = alerts(slack)

    env = app_env(slack=slack, moto_url="http://127.0.0.1:9", database_url=database_url, models_file=models_file,
                  PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=pagerduty.url)
    app = AppProcess(env, tmp_path / "app.log").start()
    try:
        # Carol owns fraud, not churn, and is not on call: told who may, nothing changes.
        click(app, slack, user="U0CAROL", message=alert, channel="C0ALERTS", action_id="page_acknowledge")
        [note] = wait_until(lambda: slack.ephemerals, timeout=10, message="an ephemeral refusal")
        assert note["user"] == "U0CAROL" and note["channel"] == "C0ALERTS"
        assert "Only the on-call <@U0BOB>" in note["text"] and "acknowledge" in note["text"]

        click(app, slack, user="U0BOB", message=alert, channel="C0ALERTS", action_id="page_acknowledge")
        updated = wait_until(lambda: (m := current(slack, "C0ALERTS", alert["ts"])).get("edits") and m,
                             timeout=10, message="the page message updated in place")
        assert "Acknowledged* by <@U0BOB>" in block_text(updated)
        assert buttons(updated) == {"page_resolve": "Resolve"}
        wait_until(lambda: "Acknowledged* by <@U0BOB>" in block_text(slack.messages("DU0BOB")[0]), timeout=10,
                   message="the DM updated too")

        # PagerDuty hears of the acknowledge after Slack does. A resolve that came first would rightly skip it
        # (the resolve closes the incident), so wait for it before resolving: this test checks all three events.
        wait_until(lambda: len(pagerduty.events) == 2, timeout=10, message="PagerDuty acknowledge")

        # Bob resolves from his DM.
        dm = slack.messages("DU0BOB")[0]
        click(app, slack, user="U0BOB", message=dm, channel="DU0BOB", action_id="page_resolve")
        resolved = wait_until(lambda: "Resolved* by <@U0BOB>" in block_text(current(slack, "C0ALERTS", alert["ts"]))
                              and current(slack, "C0ALERTS", alert["ts"]), timeout=10, message="the page resolved")
        assert buttons(resolved) == {}
        # PagerDuty is told after Slack: wait for the last event rather than race it.
        wait_until(lambda: len(pagerduty.events) == 3, timeout=10, message="PagerDuty acknowledge and resolve")
        assert [(e["event_action"], e["dedup_key"]) for e in pagerduty.events] == [
            ("trigger", "modelbot-rollout-7"), ("acknowledge", "modelbot-rollout-7"), ("resolve", "modelbot-rollout-7")]
        # The page thread stays quiet: no escalation after an acknowledge.
        assert slack.thread("C0ALERTS", alert["ts"])[1:] == []
        assert len(slack.ephemerals) == 1
    finally:
        app.stop()
