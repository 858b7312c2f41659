"""Slack listeners only: each package has register(app); handlers parse, check rights, call a service, render."""


def register(app) -> None:
    from handlers import actions, commands, events

    commands.register(app)
    actions.register(app)
    events.register(app)
