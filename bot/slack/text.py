"""Text modelbot sends to Slack: escaping for what users typed, and Slack's size limits.

Slack refuses a whole message when one field is too long (a section's text over 3,000 characters makes
chat.postMessage answer invalid_blocks), so a long reason would make a page impossible to post. Everything
modelbot builds goes through `fit_blocks` / `cut` (the WebClient in bot/slack/client.py applies them to every
message it sends), cutting with "…" instead of failing.
"""

from __future__ import annotations

from typing import Any

ELLIPSIS = "…"

# Slack's limits (Block Kit reference and chat.postMessage), in characters.
MESSAGE_TEXT = 40_000
SECTION_TEXT = 3_000
SECTION_FIELD = 2_000
CONTEXT_TEXT = 3_000
HEADER_TEXT = 150
BUTTON_TEXT = 75
BUTTON_VALUE = 2_000
ACTION_ID = 255
BLOCK_ID = 255
ALT_TEXT = 2_000
IMAGE_TITLE = 2_000
CONFIRM_TITLE = 100
CONFIRM_TEXT = 300
CONFIRM_BUTTON = 30
BLOCKS_PER_MESSAGE = 50
ELEMENTS_PER_CONTEXT = 10


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


def cut(text: str | None, limit: int) -> str | None:
    """`text` if it fits in `limit` characters, else its start and "…" (limit characters in all)."""
    if text is None or len(text) <= limit:
        return text
    head = text[: limit - len(ELLIPSIS)]
    # Never leave half an escape or half a mention: "&am…" or "<@U12…" would show as garbage.
    for opener, closer in (("&", ";"), ("<", ">")):
        start = head.rfind(opener)
        if start != -1 and closer not in head[start:] and len(head) - start <= 40:
            head = head[:start]
    return head + ELLIPSIS


def _text_object(obj: Any, limit: int) -> Any:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str) and len(obj["text"]) > limit:
        return {**obj, "text": cut(obj["text"], limit)}
    return obj


def _confirm(confirm: Any) -> Any:
    if not isinstance(confirm, dict):
        return confirm
    return {**confirm,
            **{k: _text_object(confirm[k], limit) for k, limit in
               (("title", CONFIRM_TITLE), ("text", CONFIRM_TEXT), ("confirm", CONFIRM_BUTTON),
                ("deny", CONFIRM_BUTTON)) if k in confirm}}


def _element(element: Any, text_limit: int) -> Any:
    if not isinstance(element, dict):
        return element
    out = dict(element)
    kind = out.get("type")
    if kind in ("mrkdwn", "plain_text"):
        return _text_object(out, text_limit)
    if kind == "image":
        if isinstance(out.get("alt_text"), str):
            out["alt_text"] = cut(out["alt_text"], ALT_TEXT)
        return out
    if "text" in out:
        out["text"] = _text_object(out["text"], BUTTON_TEXT if kind == "button" else text_limit)
    if isinstance(out.get("value"), str):
        out["value"] = cut(out["value"], BUTTON_VALUE)
    if "confirm" in out:
        out["confirm"] = _confirm(out["confirm"])
    return out


def fit_block(block: Any) -> Any:
    """One Block Kit block with every text cut to Slack's limit for it."""
    if not isinstance(block, dict):
        return block
    out = dict(block)
    kind = out.get("type")
    if isinstance(out.get("block_id"), str):
        out["block_id"] = out["block_id"][:BLOCK_ID]
    if kind == "section":
        out["text"] = _text_object(out.get("text"), SECTION_TEXT) if "text" in out else None
        if out["text"] is None:
            del out["text"]
        if isinstance(out.get("fields"), list):
            out["fields"] = [_text_object(f, SECTION_FIELD) for f in out["fields"]]
        if "accessory" in out:
            out["accessory"] = _element(out["accessory"], SECTION_TEXT)
    elif kind == "header":
        out["text"] = _text_object(out.get("text"), HEADER_TEXT)
    elif kind == "context":
        out["elements"] = [_element(e, CONTEXT_TEXT) for e in (out.get("elements") or [])][:ELEMENTS_PER_CONTEXT]
    elif kind == "actions":
        out["elements"] = [_element(e, SECTION_TEXT) for e in (out.get("elements") or [])]
    elif kind == "image":
        if isinstance(out.get("alt_text"), str):
            out["alt_text"] = cut(out["alt_text"], ALT_TEXT)
        if "title" in out:
            out["title"] = _text_object(out["title"], IMAGE_TITLE)
    return out


def fit_blocks(blocks: list | None) -> list | None:
    """Blocks within Slack's limits: each text cut with "…", at most 50 blocks (the rest summarised)."""
    if not blocks:
        return blocks
    fitted = [fit_block(b) for b in blocks]
    if len(fitted) > BLOCKS_PER_MESSAGE:
        dropped = len(fitted) - (BLOCKS_PER_MESSAGE - 1)
        fitted = fitted[: BLOCKS_PER_MESSAGE - 1] + [
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{ELLIPSIS} {dropped} more not shown"}]}]
    return fitted


def fit_message(fields: dict) -> dict:
    """A chat.postMessage / chat.update / response_url body with its text and blocks within Slack's limits."""
    out = dict(fields)
    if isinstance(out.get("text"), str):
        out["text"] = cut(out["text"], MESSAGE_TEXT)
    if isinstance(out.get("blocks"), list):
        out["blocks"] = fit_blocks(out["blocks"])
    return out
