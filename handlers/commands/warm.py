"""Loaded once, by the command processes' fork server, before any command: everything a first command would
otherwise load on a user's time (every subcommand and what it imports, the Airflow client, the chart modules,
matplotlib's font and glyph caches). Each command process is forked from that server, so it starts warm, and
the imports are paid once for all of them instead of once each. The web process never imports this module:
it stays free of pandas and matplotlib.
"""

from __future__ import annotations

import logging

from slack_sdk.webhook import WebhookClient  # noqa: F401  (the children answer through response_url)

from bot.chart_loading import load as load_chart_module
from bot.integrations import airflow  # noqa: F401  (the Airflow client package is large)
from handlers.commands.model import subcommands

log = logging.getLogger(__name__)


def warm() -> None:
    subcommands()  # imports every subcommand module and what they import
    try:  # charts are evidence, not the command: a broken matplotlib must not stop the children
        load_chart_module("charts.fonts").warm_font_cache()
        load_chart_module("bot.status.charts")
        load_chart_module("bot.runs.charts")
    except Exception:
        log.exception("the chart modules could not be warmed for the command processes")


warm()
