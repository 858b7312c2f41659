"""The one way modelbot talks to Slack's Web API: slack_sdk's WebClient with timeouts and retries, every
message cut to Slack's limits, and Slack's errors sorted into permanent and transient."""

from __future__ import annotations

import json as jsonlib

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.slack.text import fit_message

SLACK_TIMEOUT_SECONDS = 10

# Answers that will not change by trying again at the same place (channel or user): the place is gone, the bot
# is not let in, the person left, or the token may not post there. A page moves on to its next place.
PERMANENT_ERRORS = frozenset({
    "is_archived", "channel_not_found", "not_in_channel", "user_not_found", "account_inactive", "user_disabled",
    "invalid_auth", "not_authed", "token_revoked", "token_expired", "no_permission", "missing_scope",
    "not_allowed_token_type", "team_access_not_granted", "ekm_access_denied", "cannot_dm_bot",
    "restricted_action", "restricted_action_read_only_channel", "restricted_action_thread_only_channel",
    "restricted_action_non_threadable_channel", "is_inactive", "users_not_found", "channel_is_archived",
    "org_login_required", "access_denied",
})
# The message itself was refused: no place will take it as it is.
CONTENT_ERRORS = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_too_long", "no_text",
                            "invalid_arguments", "too_many_attachments", "markdown_text_conflict"})
PERMANENT, CONTENT, TRANSIENT = "permanent", "content", "transient"

_FITTED_METHODS = frozenset({"chat.postMessage", "chat.update", "chat.postEphemeral", "chat.scheduleMessage"})


def error_code(exc: BaseException) -> str | None:
    """Slack's error code ("is_archived", "ratelimited", ...) of a failed Web API call, if it gave one."""
    response = getattr(exc, "response", None)
    if isinstance(exc, SlackApiError) and response is not None:
        try:
            return response.get("error")
        except AttributeError:
            return None
    return None


def classify(exc: BaseException) -> str:
    """PERMANENT (the place refuses for good), CONTENT (the message is refused) or TRANSIENT (429, 5xx,
    timeouts, unreachable: worth trying again later)."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        code = error_code(exc)
        if status == 429 or (status and status >= 500):
            return TRANSIENT
        if code in PERMANENT_ERRORS:
            return PERMANENT
        if code in CONTENT_ERRORS:
            return CONTENT
    return TRANSIENT


class FittingWebClient(WebClient):
    """A WebClient whose messages never exceed Slack's limits: texts are cut with "…" before they are sent."""

    def api_call(self, api_method: str, *, json=None, data=None, **kwargs):
        if api_method in _FITTED_METHODS:
            if isinstance(json, dict):
                json = fit_message(json)
            if isinstance(data, dict):
                fields = dict(data)
                if isinstance(fields.get("blocks"), str):
                    try:
                        fields["blocks"] = jsonlib.loads(fields["blocks"])
                    except ValueError:
                        pass
                fields = fit_message(fields)
                if isinstance(fields.get("blocks"), list):
                    fields["blocks"] = jsonlib.dumps(fields["blocks"])
                data = fields
        return super().api_call(api_method, json=json, data=data, **kwargs)


def make_web_client(token: str | None, base_url: str, *, retries: bool = True,
                    timeout: float = SLACK_TIMEOUT_SECONDS) -> WebClient:
    """retries=False: one attempt, no Retry-After sleep; for a caller whose own clock matters more than the
    message (the rollout controller), with the outbox retrying what failed."""
    handlers = [
        # Slack's 429 carries Retry-After; the handler sleeps that long before the retry.
        RateLimitErrorRetryHandler(max_retry_count=3),
        ConnectionErrorRetryHandler(max_retry_count=2),
        ServerErrorRetryHandler(max_retry_count=2),
    ] if retries else []
    return FittingWebClient(token=token, base_url=base_url, timeout=timeout, retry_handlers=handlers)
