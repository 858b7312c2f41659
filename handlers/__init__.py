"""Slack listeners only: each package has register(app); handlers parse, check rights, call a service, render."""

from handlers import actions, commands, events


def register(app) -> None:
    commands.register(app)
    actions.register(app)
    events.register(app)
