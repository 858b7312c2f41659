"""Clicks ack at once and run in the bounded listener pool; a full pool answers "busy" and changes nothing.
The real Bolt app in this process, signed requests, the Slack emulator, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse

from slack_bolt.request import BoltRequest

from bot.app import build_app
from bot.paging import service as pager
from bot.services import BoundedPool
from tests.harness import sign


def click_request(slack, *, user: str, action_id: str, value: str, name: str) -> BoltRequest:
    payload = {
        "type": "block_actions", "user": {"id": user}, "api_app_id": "A0MODELBOT", "token": "x",
        "container": {"type": "message", "message_ts": "1.0", "channel_id": "C0ALERTS"},
        "channel": {"id": "C0ALERTS"}, "team": {"id": "T0EMULATOR"}, "trigger_id": "1.1",
        "response_url": slack.response_url(name),
        "actions": [{"action_id": action_id, "block_id": "b", "type": "button", "value": value,
                     "action_ts": f"{time.time():.6f}"}],
    }
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    return BoltRequest(body=body, headers={"content-type": "application/x-www-form-urlencoded",
                                           **{k.lower(): v for k, v in sign(body.encode()).items()}})


def test_a_full_listener_pool_answers_busy_and_the_ack_does_not_wait(make_services, slack):
    services = make_services()
    app = build_app(services, token_verification=False)
    services.listener_pool = BoundedPool(1, 0, "test-pool")
    thread_ts = services.slack.chat_postMessage(channel="C0CHURN", text="Rollout of churn")["ts"]
    pager.page_rollback(services, model_name="churn", rollout_id=7, reason="5XX up", channel="C0CHURN",
                        thread_ts=thread_ts, automatic=True, actor=None)
    page = pager.page_for_rollout(services, 7)

    release = threading.Event()
    assert services.listener_pool.submit(release.wait, 30)  # a long transition holds the only thread
    try:
        started = time.monotonic()
        response = app.dispatch(click_request(slack, user="U0BOB", action_id=pager.ACK_ACTION,
                                              value=str(page.id), name="busy"))
        assert response.status == 200 and time.monotonic() - started < 2.0
        [note] = slack.wait_for(lambda: [e for e in slack.ephemerals if "busy" in e["text"]], timeout=10)
        assert note["user"] == "U0BOB"
        assert pager.get_page(services, page.id).state == "open"
    finally:
        release.set()

    # Room again (once the long job has given its thread back): the same click acknowledges the page.
    slack.wait_for(lambda: services.listener_pool.submit(lambda: None), timeout=10)
    time.sleep(0.2)  # the no-op just submitted gives its slot back too
    app.dispatch(click_request(slack, user="U0BOB", action_id=pager.ACK_ACTION, value=str(page.id), name="ok"))
    slack.wait_for(lambda: pager.get_page(services, page.id).state == "acknowledged", timeout=10)
