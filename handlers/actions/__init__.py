"""Button and modal listeners. Each module here has register(app); rights are checked again on every click."""

import importlib

MODULES: list[str] = ["page_buttons", "rollout_buttons"]


def register(app) -> None:
    for name in MODULES:
        importlib.import_module(f"handlers.actions.{name}").register(app)
