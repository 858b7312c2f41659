"""The services a handler or job needs, built once per process from the settings."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient

from bot.config import Settings
from bot.registry import Registry, load_registry
from bot.slack.client import make_web_client
from bot.store import Store


@dataclass
class Services:
    settings: Settings
    registry: Registry
    store: Store
    slack: WebClient
    # Set by the web process: where post-ack command work runs (handlers/commands/deferred.py).
    command_deferral: Any = None

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool = True) -> "Services":
        registry = load_registry(settings.MODELS_FILE)
        store = Store(settings.sqlalchemy_url)
        if migrate:
            store.migrate()
        return cls(
            settings=settings,
            registry=registry,
            store=store,
            slack=make_web_client(settings.SLACK_BOT_TOKEN, settings.SLACK_API_URL),
        )

    @functools.cached_property
    def background(self) -> ThreadPoolExecutor:
        """Work that follows an ack. Few threads: each competes for the GIL with request threads that must
        ack within Slack's 3 s, so extra commands wait their turn here instead of slowing every ack down."""
        return ThreadPoolExecutor(max_workers=4, thread_name_prefix="after-ack")

    @functools.cached_property
    def airflow(self):
        """The Airflow adapter, or None when AIRFLOW_URL is unset (features answer "not configured")."""
        if not self.settings.airflow_configured:
            return None
        from bot.integrations.airflow import AirflowAdapter

        return AirflowAdapter.from_settings(self.settings)

    def integrations(self) -> dict[str, str]:
        s = self.settings
        return {
            "slack": "socket mode" if s.socket_mode else "http",
            "airflow": s.AIRFLOW_URL or "not configured",
            "aws": s.AWS_ENDPOINT_URL or f"region {s.AWS_REGION or self.registry.defaults.region}",
            "pagerduty": "configured" if s.PAGERDUTY_ROUTING_KEY else "not configured",
            "database": self.store.dialect,
            "models": str(len(self.registry.models)),
        }
