"""Escaping for text that users typed, before it is echoed back into Slack."""

from __future__ import annotations


def escape(text: str) -> str:
    """Slack's three control characters: with them escaped, '<!channel>' or '<@U123>' stay plain text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(text: str) -> str:
    """Inline code for user text; backticks are dropped so they cannot end the span early."""
    return "`" + escape(text).replace("`", "'") + "`"


def mention(slack_id: str) -> str:
    """A user group (S...) or a user (U.../W...) mention."""
    if slack_id.startswith("S"):
        return f"<!subteam^{slack_id}>"
    return f"<@{slack_id}>"
