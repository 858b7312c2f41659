"""Button and modal listeners. Each module here has register(app); rights are checked again on every click."""

from handlers.actions import page_buttons, quality_buttons, rollout_buttons

MODULES = (page_buttons, rollout_buttons, quality_buttons)


def register(app) -> None:
    for module in MODULES:
        module.register(app)
