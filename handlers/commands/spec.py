"""What a /model subcommand declares, and what it is handed when it runs.

A subcommand module exposes SUBCOMMANDS: a list of Subcommand. The router (model.py) parses the text with
the declared flags/options, checks arity, resolves the model argument (with "did you mean"), checks rights
for mutating subcommands, acks Slack within its 3 s, and only then calls `run` (slow work is fine there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from bot.slack.command_line import CommandLine
from bot.registry import Model
from bot.services import Services


@dataclass
class Invocation:
    services: Services
    user_id: str
    channel_id: str
    line: CommandLine
    model: Model | None
    # reply(text=..., blocks=...): ephemeral to the user for a slash command (replacing the progress note),
    # a thread reply for a mention. Always give text: it is the notification and the accessible fallback.
    reply: Callable[..., Any]
    client: Any  # slack_sdk WebClient
    body: dict = field(default_factory=dict)
    trigger_id: str | None = None
    thread_ts: str | None = None  # set when invoked by a mention inside one of modelbot's threads

    @property
    def args(self) -> tuple[str, ...]:
        """Positional arguments after the subcommand, without the model name when the subcommand takes one."""
        return self.line.args[1:] if self.model is not None else self.line.args


@dataclass(frozen=True)
class Ack:
    """What a subcommand's `quick` part puts in the ack itself, and whether `run` still follows it."""

    reply: dict  # {"text": ..., "blocks": ...}
    follow_up: bool = False  # True: run() is handed to the post-ack pool after the ack (charts, a live read)


@dataclass(frozen=True)
class Subcommand:
    name: str
    usage: str  # e.g. "rollback <model> [reason]" (without the leading /model)
    summary: str  # one line for help
    run: Callable[[Invocation], Any]
    model_arg: bool = False  # the first positional argument must name a registered model
    min_args: int = 0  # positional arguments, the model included
    max_args: int | None = None
    flags: frozenset[str] = frozenset()
    options: frozenset[str] = frozenset()
    mutating: bool = False  # owners/admins only; the router checks and audits a denial
    action: str = ""  # words for the rights message: "roll back", "retrain"
    # The ack text while run() works; None = run() is quick and returns the whole reply as a dict for ack().
    progress: Callable[[Invocation], str] | None = lambda inv: "Working on it…"
    # Answers within the ack from what is already known (the store, no outside call); its Ack says whether
    # run() follows. Takes precedence over `progress` for slash commands; mentions still call run().
    quick: Callable[[Invocation], Ack] | None = None
    # The model argument may be a glob (fnmatch: `fraud-*`) instead of one model's name.
    glob_arg: bool = False
