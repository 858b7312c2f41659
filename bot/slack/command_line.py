"""Parsing the text of `/model ...` like a shell line, into a subcommand, arguments and options."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from bot.slack.text import code


class UsageError(Exception):
    """The command text cannot be used; the message says what was wrong (already Slack-escaped)."""


@dataclass(frozen=True)
class CommandLine:
    subcommand: str
    args: tuple[str, ...] = ()
    flags: frozenset[str] = frozenset()
    options: dict[str, str] = field(default_factory=dict)


def split(text: str) -> list[str]:
    # Slack turns quotes typed on phones into curly ones; a shell user means the plain ones.
    text = text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'").replace("\u2019", "'")
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"could not read the command: {exc} (check your quotes)") from None


def parse(text: str, *, flags: frozenset[str] = frozenset(), options: frozenset[str] = frozenset()) -> CommandLine:
    """`flags` take no value (--force); `options` take one (--variant NAME or --variant=NAME)."""
    words = split(text)
    if not words:
        return CommandLine(subcommand="")
    sub, rest = words[0].lower(), words[1:]
    args: list[str] = []
    seen_flags: set[str] = set()
    seen_options: dict[str, str] = {}
    i = 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("--") and len(word) > 2:
            name, eq, value = word[2:].partition("=")
            if name in flags:
                if eq:
                    raise UsageError(f"--{name} takes no value")
                seen_flags.add(name)
            elif name in options:
                if not eq:
                    i += 1
                    if i >= len(rest) or rest[i].startswith("--"):
                        raise UsageError(f"--{name} needs a value")
                    value = rest[i]
                if name in seen_options:
                    raise UsageError(f"--{name} given twice")
                seen_options[name] = value
            else:
                known = sorted([f"--{f}" for f in flags] + [f"--{o}" for o in options])
                hint = f" (this command knows {', '.join(known)})" if known else " (this command takes no options)"
                raise UsageError(f"unknown option {code('--' + name)}{hint}")
        else:
            args.append(word)
        i += 1
    return CommandLine(subcommand=sub, args=tuple(args), flags=frozenset(seen_flags), options=seen_options)


def parse_key_values(words: tuple[str, ...] | list[str]) -> dict[str, str]:
    """key=value pairs (for DAG conf); anything else is a usage error naming the word."""
    conf: dict[str, str] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise UsageError(f"{code(word)} is not key=value")
        if not key.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise UsageError(f"{code(key)} is not a valid key (letters, digits, '_', '-', '.')")
        conf[key] = value
    return conf


def days_option(raw: str | None, *, default: int = 30, maximum: int = 365) -> int:
    """`--days N` of a report; a usage error says what a good value is."""
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise UsageError(f"--days needs a whole number of days from 1 to {maximum}, not {code(raw)}.")
    return int(raw)
