import time

from bot.slack.client import make_web_client


def test_429_is_retried_after_retry_after(slack):
    client = make_web_client("xoxb-test", slack.api_url)
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()
    resp = client.chat_postMessage(channel="C0CHURN", text="hello")
    assert resp["ok"] and time.monotonic() - started >= 1
    assert [m["text"] for m in slack.messages("C0CHURN")] == ["hello"]


def test_server_errors_are_retried(slack):
    client = make_web_client("xoxb-test", slack.api_url)
    slack.fail_next("chat.postMessage", status=500, count=1)
    assert client.chat_postMessage(channel="C0CHURN", text="after a 500")["ok"]
    assert len(slack.messages("C0CHURN")) == 1


def test_base_url_comes_from_settings(slack):
    client = make_web_client("xoxb-test", slack.api_url)
    assert client.auth_test()["ok"]
    assert slack.calls_to("auth.test")
