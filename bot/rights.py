"""Who may change what: owners of a model and registry admins. Checked on every command and every click."""

from __future__ import annotations

from bot.registry import Model, Registry
from bot.slack.text import mention


class NotAllowed(Exception):
    """The user may not do this; the message says who may."""


def may_change(registry: Registry, user_id: str, model: Model) -> bool:
    return user_id in registry.defaults.admins or user_id in model.owners


def require_change(registry: Registry, user_id: str, model: Model, action: str) -> None:
    if may_change(registry, user_id, model):
        return
    who = [mention(u) for u in model.owners] + [mention(u) for u in registry.defaults.admins]
    allowed = ", ".join(who) if who else "nobody (no owners or admins are set in the models file)"
    raise NotAllowed(f"Only the owners of *{model.name}* or an admin may {action}. Ask one of: {allowed}.")
