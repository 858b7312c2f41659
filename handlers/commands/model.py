"""The /model router: parse, resolve, check rights, ack within Slack's 3 s, then run the subcommand."""

from __future__ import annotations

import difflib
import functools
import importlib
import logging
import os
import threading

from bot import audit, metrics
from bot.slack.command_line import CommandLine, UsageError, parse, split
from bot.errors import ExternalError
from bot.registry import Model
from bot.rights import NotAllowed, may_change, require_change
from bot.slack.text import code, escape
from handlers.commands.spec import Invocation, Subcommand

log = logging.getLogger(__name__)

# Modules under handlers/commands/ that expose SUBCOMMANDS, in the order help lists them.
KNOWN_LISTED = 20  # registered models named in an "unknown model" reply

MODULES = ["help", "status", "retrain", "promote", "rollback", "pause", "pricing", "quality", "cost"]


@functools.cache
def subcommands() -> dict[str, Subcommand]:
    table: dict[str, Subcommand] = {}
    for name in MODULES:
        for spec in importlib.import_module(f"handlers.commands.{name}").SUBCOMMANDS:
            table[spec.name] = spec
    return table


def usage_text(problem: str, spec: Subcommand | None) -> str:
    usage = f"`/model {escape(spec.usage)}`" if spec else "`/model help`"
    return f":warning: {problem}\nUsage: {usage}"


def usage_reply(problem: str, spec: Subcommand | None) -> dict:
    return {"response_type": "ephemeral", "text": usage_text(problem, spec)}


def resolve(text: str, services) -> tuple[Subcommand, CommandLine, Model | None]:
    """Parse and validate; raises UsageError with a message naming what was wrong."""
    words = split(text)
    if not words:
        raise UsageError("no subcommand given. Try `/model help`.")
    name = words[0].lower()
    table = subcommands()
    spec = table.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise UsageError(f"unknown subcommand {code(words[0])}.{hint} Known: {', '.join(table)}.")
    try:
        line = parse(text, flags=spec.flags, options=spec.options)
    except UsageError as exc:
        raise _WithSpec(str(exc), spec) from None
    if len(line.args) < spec.min_args:
        missing = "the model name" if spec.model_arg and not line.args else "an argument"
        raise _WithSpec(f"missing {missing}.", spec)
    if spec.max_args is not None and len(line.args) > spec.max_args:
        extra = " ".join(line.args[spec.max_args:])
        raise _WithSpec(f"unexpected {code(extra)}.", spec)
    model = None
    if spec.model_arg and line.args and not (spec.glob_arg and any(c in line.args[0] for c in "*?[")):
        model = resolve_model(line.args[0], services, spec)
    return spec, line, model


def resolve_model(name: str, services, spec: Subcommand | None = None):
    model = services.registry.get(name)
    if model is None:
        close = services.registry.suggest(name)
        hint = f" Did you mean {', '.join(f'`{c}`' for c in close)}?" if close else ""
        names = services.registry.names()
        # A thousand names would not fit in one Slack message: a few, and where to find the rest.
        known = ", ".join(names[:KNOWN_LISTED]) or "none registered"
        if len(names) > KNOWN_LISTED:
            known += f" and {len(names) - KNOWN_LISTED} more (`/model status` lists them)"
        raise _WithSpec(f"unknown model {code(name)}.{hint} Registered models: {known}.", spec)
    return model


class _WithSpec(UsageError):
    def __init__(self, message: str, spec: Subcommand | None):
        super().__init__(message)
        self.spec = spec


def handle_model_command(ack, command, respond, client, context, body):
    services = context["services"]
    user_id = command.get("user_id", "")
    try:
        spec, line, model = resolve(command.get("text", ""), services)
    except UsageError as exc:
        metrics.COMMANDS.labels("invalid", "usage").inc()
        ack(**usage_reply(str(exc), getattr(exc, "spec", None)))
        return

    def reply(text: str, blocks: list | None = None, **kwargs) -> None:
        respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=True, **kwargs)

    inv = Invocation(
        services=services,
        user_id=user_id,
        channel_id=command.get("channel_id", ""),
        line=line,
        model=model,
        reply=reply,
        client=client,
        body=body,
        trigger_id=command.get("trigger_id"),
    )
    if spec.mutating and model is not None and not may_change(services.registry, user_id, model):
        try:
            require_change(services.registry, user_id, model, spec.action or spec.name)
        except NotAllowed as exc:
            ack(response_type="ephemeral", text=f":no_entry: {exc}")
        metrics.COMMANDS.labels(spec.name, "denied").inc()
        audit.record(services.store, user_id=user_id, action=spec.name, model=model.name, outcome="denied",
                     text=command.get("text", ""))
        return
    if spec.quick is not None:
        try:
            first = spec.quick(inv)
        except UsageError as exc:
            metrics.COMMANDS.labels(spec.name, "usage").inc()
            ack(**usage_reply(str(exc), spec))
            return
        except Exception as exc:
            metrics.COMMANDS.labels(spec.name, "failed").inc()
            log.exception("/model %s failed before the ack", spec.name)
            ack(response_type="ephemeral",
                text=f":boom: `/model {spec.name}` failed ({type(exc).__name__}); it is logged for the team.")
            return
        if not first.follow_up:
            metrics.COMMANDS.labels(spec.name, "ok").inc()
            ack(response_type="ephemeral", **first.reply)
            return
        defer(spec, inv, command, body, ack, first.reply)
        return
    if spec.progress is None:
        run_quick(spec, inv, ack)
        return
    defer(spec, inv, command, body, ack, {"text": spec.progress(inv)})


BUSY = ":hourglass: modelbot is busy with other commands right now, try again in a minute. Nothing was done."
# Post-ack work that may wait or run at once in this process when there are no command processes.
THREAD_QUEUE = threading.BoundedSemaphore(int(os.environ.get("MODELBOT_COMMAND_QUEUE") or 32))


def defer(spec: Subcommand, inv: Invocation, command: dict, body: dict, ack, first: dict) -> None:
    """Ack with `first`, then run the subcommand after the ack; when the queue is full, say so instead."""
    services = inv.services
    deferral = services.command_deferral
    admitted = deferral.admit() if deferral is not None else THREAD_QUEUE.acquire(blocking=False)
    if not admitted:
        metrics.COMMANDS.labels(spec.name, "busy").inc()
        ack(response_type="ephemeral", text=BUSY)
        return
    ack(response_type="ephemeral", **first)
    if deferral is not None:
        deferral.submit(command, body)
        return

    def run_then_release() -> None:
        try:
            run_after_ack(spec, inv)
        finally:
            THREAD_QUEUE.release()

    services.background.submit(run_then_release)


def run_quick(spec: Subcommand, inv: Invocation, ack) -> None:
    try:
        result = spec.run(inv)
    except UsageError as exc:
        ack(**usage_reply(str(exc), spec))
        return
    metrics.COMMANDS.labels(spec.name, "ok").inc()
    ack(response_type="ephemeral", **result)


def run_after_ack(spec: Subcommand, inv: Invocation) -> None:
    """Run a subcommand whose reply goes through inv.reply; every failure still answers the user."""
    try:
        spec.run(inv)
        metrics.COMMANDS.labels(spec.name, "ok").inc()
    except UsageError as exc:
        metrics.COMMANDS.labels(spec.name, "usage").inc()
        inv.reply(text=usage_text(str(exc), spec))
    except NotAllowed as exc:
        metrics.COMMANDS.labels(spec.name, "denied").inc()
        inv.reply(text=f":no_entry: {exc}")
    except ExternalError as exc:
        metrics.COMMANDS.labels(spec.name, "failed").inc()
        inv.reply(text=f":warning: {exc}")
    except Exception as exc:
        metrics.COMMANDS.labels(spec.name, "failed").inc()
        log.exception("/model %s failed", spec.name)
        inv.reply(text=f":boom: `/model {spec.name}` failed unexpectedly ({type(exc).__name__}); it is logged for the team.")
