"""Slack's size limits and error classes, as the paging path relies on them: cut with "…" instead of refused."""

from __future__ import annotations

from bot.config import Settings
from bot.slack.client import CONTENT, PERMANENT, TRANSIENT, classify
from bot.slack.text import BUTTON_VALUE, HEADER_TEXT, SECTION_TEXT, cut, fit_blocks, fit_message
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse


def test_cut_keeps_short_text_and_ends_long_text_with_an_ellipsis():
    assert cut("short", 10) == "short"
    assert cut("x" * 20, 10) == "x" * 9 + "…"
    # Never half an escape or half a mention.
    assert cut("a" * 5 + "&lt;!channel&gt;", 9) == "aaaaa…"
    assert cut("hi <@U0ALICE> there", 8) == "hi …"


def test_fit_blocks_cuts_every_field_to_its_limit():
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 500}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "s" * 10_000}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c" * 5000},
                                         {"type": "image", "image_url": "https://x", "alt_text": "a" * 5000}]},
        {"type": "actions", "elements": [{"type": "button", "action_id": "b", "value": "v" * 5000,
                                          "text": {"type": "plain_text", "text": "t" * 200},
                                          "confirm": {"title": {"type": "plain_text", "text": "T" * 200},
                                                      "text": {"type": "plain_text", "text": "X" * 900},
                                                      "confirm": {"type": "plain_text", "text": "C" * 90},
                                                      "deny": {"type": "plain_text", "text": "D" * 90}}}]},
    ] + [{"type": "divider"}] * 60
    fitted = fit_blocks(blocks)
    assert len(fitted) == 50 and "more not shown" in fitted[-1]["elements"][0]["text"]
    assert len(fitted[0]["text"]["text"]) == HEADER_TEXT
    assert len(fitted[1]["text"]["text"]) == SECTION_TEXT and fitted[1]["text"]["text"].endswith("…")
    assert len(fitted[2]["elements"][1]["alt_text"]) == 2000
    button = fitted[3]["elements"][0]
    assert len(button["value"]) == BUTTON_VALUE and len(button["text"]["text"]) == 75
    assert len(button["confirm"]["title"]["text"]) == 100 and len(button["confirm"]["text"]["text"]) == 300
    assert blocks[1]["text"]["text"] == "s" * 10_000  # the caller's blocks are left alone
    assert len(fit_message({"text": "m" * 50_000})["text"]) == 40_000


def test_slack_errors_are_sorted_into_permanent_content_and_transient():
    def error(code, status=200):
        response = SlackResponse(client=None, http_verb="POST", api_url="x", req_args={},
                                 data={"ok": False, "error": code}, headers={}, status_code=status)
        return SlackApiError(code, response)

    assert classify(error("is_archived")) == PERMANENT
    assert classify(error("not_in_channel")) == PERMANENT
    assert classify(error("invalid_blocks")) == CONTENT
    assert classify(error("ratelimited", 429)) == TRANSIENT
    assert classify(error("internal_error", 503)) == TRANSIENT
    assert classify(TimeoutError("read timed out")) == TRANSIENT


def test_secrets_do_not_show_in_the_settings_repr():
    settings = Settings(_env_file=None, SLACK_BOT_TOKEN="xoxb-very-secret", SLACK_SIGNING_SECRET="sign-secret",
                        SLACK_APP_TOKEN="xapp-secret", AIRFLOW_PASSWORD="pw-secret", AIRFLOW_TOKEN="tok-secret",
                        PAGERDUTY_ROUTING_KEY="pd-secret")
    shown = repr(settings) + str(settings.model_dump())
    assert not any(secret in shown for secret in ("very-secret", "sign-secret", "xapp-secret", "pw-secret",
                                                  "tok-secret", "pd-secret"))
    assert settings.SLACK_BOT_TOKEN.get_secret_value() == "xoxb-very-secret"
