"""The Slack emulator, driven the way the app drives Slack: slack_sdk's real clients over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.webhook import WebhookClient

from sandbox.slack_emulator import SlackEmulator

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server():
    with SlackEmulator() as emulator:
        yield emulator


@pytest.fixture
def slack(server):
    server.reset()
    return server


@pytest.fixture
def client(slack):
    return WebClient(token="xoxb-test", base_url=slack.api_url, timeout=5)


def test_auth_test_answers_what_bolt_reads_and_bolt_app_starts(slack, client):
    from slack_bolt import App

    identity = client.auth_test()
    assert (identity["user_id"], identity["bot_id"], identity["team_id"]) == ("U0MODELBOT", "B0MODELBOT", "T0EMULATOR")
    assert identity["url"].startswith("https://") and identity["team"] and identity["user"] == "modelbot"

    App(client=client, signing_secret="secret")  # token verification calls auth.test and raises on failure
    assert len(slack.calls_to("auth.test")) == 2


@pytest.mark.parametrize(("token", "error"), [(None, "not_authed"), ("not-a-token", "invalid_auth")])
def test_bad_token_is_refused_and_nothing_is_posted(slack, token, error):
    with pytest.raises(SlackApiError) as refused:
        WebClient(token=token, base_url=slack.api_url).chat_postMessage(channel="C1", text="hello")
    assert refused.value.response["error"] == error
    assert slack.messages("C1") == []


def test_form_body_with_token_field_is_accepted(slack):
    body = b"token=xoxp-person&channel=C9&text=from+a+form&blocks=%5B%7B%22type%22%3A%22divider%22%7D%5D"
    request = urllib.request.Request(slack.api_url + "chat.postMessage", data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=5) as response:
        answer = json.loads(response.read())
    assert answer["ok"] is True
    [message] = slack.messages("C9")
    assert message["text"] == "from a form" and message["blocks"] == [{"type": "divider"}]
    assert slack.calls_to("chat.postMessage")[0].token == "xoxp-person"


def test_unknown_method(client):
    with pytest.raises(SlackApiError) as refused:
        client.api_call("chat.summonDragon", json={"channel": "C1"})
    assert refused.value.response["error"] == "unknown_method"


def test_thread_replies_come_back_in_order_with_permalinks(slack, client):
    parent = client.chat_postMessage(channel="C1", text="run started", blocks=[{"type": "divider"}])
    replies = [client.chat_postMessage(channel="C1", thread_ts=parent["ts"], text=f"step {i}") for i in range(3)]
    client.chat_postMessage(channel="C1", text="unrelated")

    stamps = [parent["ts"]] + [r["ts"] for r in replies]
    assert stamps == sorted(stamps, key=float) and len(set(stamps)) == 4
    assert all(len(ts.split(".")[1]) == 6 for ts in stamps)
    thread = slack.thread("C1", parent["ts"])
    assert [m["text"] for m in thread] == ["run started", "step 0", "step 1", "step 2"]
    assert thread[0]["reply_count"] == 3 and thread[0]["bot_id"] == "B0MODELBOT"
    assert len(slack.messages("C1")) == 5

    link = client.chat_getPermalink(channel="C1", message_ts=parent["ts"])["permalink"]
    assert link == f"https://emulator.slack/archives/C1/p{parent['ts'].replace('.', '')}"
    reply_link = client.chat_getPermalink(channel="C1", message_ts=replies[0]["ts"])["permalink"]
    assert f"thread_ts={parent['ts']}" in reply_link
    fetched = client.conversations_replies(channel="C1", ts=parent["ts"])["messages"]
    assert [m["ts"] for m in fetched] == stamps


def test_chat_update_changes_the_message_in_place_and_keeps_history(slack, client):
    posted = client.chat_postMessage(channel="C1", text="training: running", blocks=[{"type": "divider"}])
    updated = client.chat_update(channel="C1", ts=posted["ts"], text="training: succeeded")

    assert updated["ts"] == posted["ts"] and updated["message"]["text"] == "training: succeeded"
    [message] = slack.messages("C1")
    assert message["text"] == "training: succeeded"
    assert message["blocks"] == [{"type": "divider"}]  # Slack keeps blocks that the update leaves out
    assert [e["text"] for e in message["edits"]] == ["training: running"]

    with pytest.raises(SlackApiError) as refused:
        client.chat_update(channel="C1", ts="1.000001", text="nope")
    assert refused.value.response["error"] == "message_not_found"


def test_files_upload_v2_into_a_thread_keeps_bytes_title_and_alt_text(slack, client):
    parent = client.chat_postMessage(channel="C2", text="evaluation")
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    uploaded = client.files_upload_v2(channel="C2", thread_ts=parent["ts"], content=png, filename="auc.png",
                                      title="AUC: candidate vs production", alt_txt="Candidate AUC 0.91 beats 0.89",
                                      initial_comment="comparison")

    assert uploaded["file"]["id"].startswith("F")
    [stored] = slack.files
    assert stored.data == png and stored.title == "AUC: candidate vs production"
    assert stored.alt_txt == "Candidate AUC 0.91 beats 0.89"
    assert (stored.channel, stored.thread_ts, stored.initial_comment) == ("C2", parent["ts"], "comparison")
    share = slack.thread("C2", parent["ts"])[-1]
    assert share["text"] == "comparison" and share["files"][0]["id"] == stored.id


def test_complete_upload_of_a_file_never_uploaded_is_refused(client):
    with pytest.raises(SlackApiError) as refused:
        client.files_completeUploadExternal(files=[{"id": "F0NOPE", "title": "x"}], channel_id="C1")
    assert refused.value.response["error"] == "file_not_found"


def test_rate_limit_is_retried_after_retry_after_seconds(slack):
    patient = WebClient(token="xoxb-test", base_url=slack.api_url, retry_handlers=[RateLimitErrorRetryHandler()])
    slack.fail_next("chat.postMessage", status=429, retry_after=1)

    started = time.monotonic()
    posted = patient.chat_postMessage(channel="C3", text="after the limit")
    waited = time.monotonic() - started

    assert posted["ok"] and waited >= 1.0
    first, second = slack.calls_to("chat.postMessage")
    assert (first.status, first.error, second.error) == (429, "ratelimited", None)
    assert [m["text"] for m in slack.messages("C3")] == ["after the limit"]


def test_rate_limit_without_retry_handler_reports_429_and_retry_after(slack, client):
    slack.fail_next("chat.update", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as limited:
        client.chat_update(channel="C1", ts="1.1", text="x")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "7"
    assert limited.value.response["error"] == "ratelimited"


def test_server_errors_for_the_next_calls_then_recovery(slack):
    patient = WebClient(token="xoxb-test", base_url=slack.api_url,
                        retry_handlers=[ServerErrorRetryHandler(2, FixedValueRetryIntervalCalculator(0.05))])
    slack.fail_next("auth.test", status=500, count=3)
    with pytest.raises(SlackApiError) as failed:
        patient.auth_test()  # one try plus two retries, all answered 500
    assert failed.value.response.status_code == 500
    assert patient.auth_test()["ok"]
    assert [c.status for c in slack.calls_to("auth.test")] == [500, 500, 500, 200]


def test_error_next_refuses_only_the_next_calls(slack, client):
    slack.error_next("chat.postMessage", "channel_not_found", count=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as refused:
            client.chat_postMessage(channel="C4", text="lost")
        assert refused.value.response["error"] == "channel_not_found"
    client.chat_postMessage(channel="C4", text="delivered")
    assert [m["text"] for m in slack.messages("C4")] == ["delivered"]


def test_response_url_records_what_the_app_sends(slack):
    url = slack.response_url("cmd-1")
    answer = WebhookClient(url, timeout=5).send(text="Rolled back churn", replace_original=True)
    assert (answer.status_code, answer.body) == (200, "ok")

    [response] = slack.responses_for("cmd-1")
    assert response.body["text"] == "Rolled back churn" and response.body["replace_original"] is True
    assert slack.responses_for(url) == [response]
    assert WebhookClient(slack.url + "/response/never-issued", timeout=5).send(text="x").status_code == 404


def test_direct_messages_users_and_usergroups(slack, client):
    dm = client.conversations_open(users="U0BOB")["channel"]["id"]
    assert dm == "D" + "U0BOB"
    client.chat_postMessage(channel="U0BOB", text="you are paged")
    assert [m["text"] for m in slack.messages(dm)] == ["you are paged"]

    slack.add_user("U0ALICE", name="alice", real_name="Alice Liddell", tz="Europe/London", tz_offset=3600)
    alice = client.users_info(user="U0ALICE")["user"]
    assert (alice["real_name"], alice["tz"], alice["tz_offset"]) == ("Alice Liddell", "Europe/London", 3600)
    assert client.users_info(user="U0ANYONE")["user"]["tz"] == "UTC"

    assert client.usergroups_users_list(usergroup="S0ONCALL")["users"] == []
    slack.set_usergroup("S0ONCALL", ["U0BOB", "U0ALICE"])
    assert client.usergroups_users_list(usergroup="S0ONCALL")["users"] == ["U0BOB", "U0ALICE"]


def test_ephemeral_views_and_reactions(slack, client):
    client.chat_postEphemeral(channel="C5", user="U0ALICE", text="usage: /model help")
    assert [(e["user"], e["text"]) for e in slack.ephemerals] == [("U0ALICE", "usage: /model help")]
    assert slack.messages("C5") == []

    view = client.views_open(trigger_id="123.456", view={"type": "modal", "title": {"type": "plain_text", "text": "Why"}})
    assert view["view"]["id"].startswith("V") and slack.views[0]["view"]["type"] == "modal"

    ts = client.chat_postMessage(channel="C5", text="page")["ts"]
    client.reactions_add(channel="C5", timestamp=ts, name="eyes")
    assert slack.messages("C5")[0]["reactions"][0]["name"] == "eyes"
    with pytest.raises(SlackApiError) as refused:
        client.reactions_add(channel="C5", timestamp="9.9", name="eyes")
    assert refused.value.response["error"] == "message_not_found"


def test_concurrent_posts_all_land_with_distinct_timestamps(slack, client):
    with ThreadPoolExecutor(max_workers=8) as pool:
        stamps = list(pool.map(lambda i: client.chat_postMessage(channel="C6", text=str(i))["ts"], range(80)))
    assert len(set(stamps)) == 80 and len(slack.messages("C6")) == 80


def test_timestamps_stay_unique_when_the_clock_stands_still(monkeypatch):
    import sandbox.slack_emulator as module

    monkeypatch.setattr(module, "time", SimpleNamespace(time=lambda: 1700000000.0))
    with SlackEmulator() as fresh:
        client = WebClient(token="xoxb-test", base_url=fresh.api_url, timeout=5)
        stamps = [client.chat_postMessage(channel="C6", text=str(i))["ts"] for i in range(3)]
    assert stamps == sorted(stamps, key=float) and len(set(stamps)) == 3
    assert all(ts.startswith("17000000") and len(ts) == len("1700000000.000100") for ts in stamps)


def test_wait_for_sees_a_later_post_and_times_out_naming_recent_calls(slack, client):
    threading.Timer(0.2, lambda: client.chat_postMessage(channel="C7", text="late")).start()
    found = slack.wait_for(lambda: slack.messages("C7"), timeout=5)
    assert found[0]["text"] == "late"
    with pytest.raises(TimeoutError, match="chat.postMessage"):
        slack.wait_for(lambda: slack.messages("C8"), timeout=0.1)


def test_reset_forgets_traffic_but_keeps_configured_users(slack, client):
    slack.add_user("U0KEEP", real_name="Kept")
    client.chat_postMessage(channel="C1", text="x")
    slack.reset()
    assert slack.calls == [] and slack.messages("C1") == []
    assert client.users_info(user="U0KEEP")["user"]["real_name"] == "Kept"


def test_command_line_entry_serves_in_the_foreground():
    process = subprocess.Popen([sys.executable, "-m", "sandbox.slack_emulator", "--port", "0"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        api_url = line.strip().rsplit("SLACK_API_URL=", 1)[-1]
        assert api_url.startswith("http://127.0.0.1:") and api_url.endswith("/api/")
        assert WebClient(token="xoxb-test", base_url=api_url, timeout=5).auth_test()["ok"]
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0
