"""@modelbot inside one of its threads acts on that thread's model: `@modelbot status`, `@modelbot rollback`."""

from __future__ import annotations

import logging
import re

from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from bot import audit
from bot.slack.command_line import UsageError
from bot.rights import NotAllowed, require_change
from bot.store.foundation import Thread
from handlers.commands.model import resolve, run_after_ack, usage_text
from handlers.commands.spec import Invocation

log = logging.getLogger(__name__)

MENTION = re.compile(r"<@[A-Z0-9]+(\|[^>]*)?>")


def thread_model(services, channel: str, thread_ts: str) -> str | None:
    with services.store.session() as s:
        row = s.scalars(select(Thread).where(Thread.channel == channel, Thread.ts == thread_ts)).first()
        return row.model if row else None


def on_mention(event, client, context, body):
    """Bolt acks the event itself; the work goes to the bounded listener pool, never Bolt's own threads."""
    services = context["services"]
    if not services.listener_pool.submit(handle_mention, event, client, context, body):
        thread_ts = event.get("thread_ts") or event.get("ts")
        try:
            services.slack.chat_postMessage(channel=event.get("channel", ""), thread_ts=thread_ts,
                                            text=":hourglass: modelbot is busy, try again in a minute.")
        except (SlackApiError, OSError) as exc:
            log.warning("mention: Slack did not take the busy note: %s", exc)


def handle_mention(event, client, context, body):
    services = context["services"]
    channel = event.get("channel", "")
    thread_ts = event.get("thread_ts")
    user_id = event.get("user", "")
    words = MENTION.sub("", event.get("text", "")).strip()

    def reply(text: str, blocks: list | None = None, **_ignored) -> None:
        # services.slack cuts every text to Slack's limits.
        services.slack.chat_postMessage(channel=channel, thread_ts=thread_ts or event.get("ts"), text=text,
                                        blocks=blocks)

    model_name = thread_model(services, channel, thread_ts) if thread_ts else None
    if model_name is None:
        reply("Mention me inside one of my run or rollout threads to act on its model, or use `/model help`.")
        return
    first, _, rest = (words or "status").partition(" ")
    text = f"{first} {model_name} {rest}".strip()
    try:
        spec, line, model = resolve(text, services)
        if not spec.model_arg:
            raise UsageError(f"`{spec.name}` does not act on a thread's model; use `/model {spec.usage}`.")
    except UsageError as exc:
        reply(usage_text(str(exc), getattr(exc, "spec", None)))
        return
    inv = Invocation(
        services=services, user_id=user_id, channel_id=channel, line=line, model=model, reply=reply,
        client=client, body=body, thread_ts=thread_ts,
    )
    if spec.mutating:
        try:
            require_change(services.registry, user_id, model, spec.action or spec.name)
        except NotAllowed as exc:
            audit.record(services.store, user_id=user_id, action=spec.name, model=model.name, outcome="denied",
                         text=words, via="mention")
            reply(f":no_entry: {exc}")
            return
    if spec.progress is None:
        result = spec.run(inv)
        reply(**result)
        return
    run_after_ack(spec, inv)


def register(app) -> None:
    app.event("app_mention")(on_mention)
