"""Fixtures for paging: a fake PagerDuty, and Services wired to the Slack emulator and a fresh database."""

from __future__ import annotations

import pytest

from tests.paging.fake_pagerduty import FakePagerDuty

ROUTING_KEY = "R0UTINGKEY0123456789abcdef012345"


@pytest.fixture
def pagerduty(monkeypatch):
    from bot import pagerduty as client

    monkeypatch.setattr(client, "BACKOFF_SECONDS", 0.05)  # real backoff shape, test-sized waits
    fake = FakePagerDuty().start()
    yield fake
    fake.stop()


@pytest.fixture
def make_services(slack, database_url, models_file, pagerduty):
    """make_services(**settings) -> Services; PagerDuty is configured unless PAGERDUTY_ROUTING_KEY=None."""
    from bot.config import load_settings
    from bot.services import Services

    made = []

    def make(**overrides):
        values = dict(
            SLACK_BOT_TOKEN="xoxb-test-token",
            SLACK_SIGNING_SECRET="test-signing-secret",
            SLACK_APP_TOKEN=None,
            SLACK_API_URL=slack.api_url,
            DATABASE_URL=database_url,
            MODELS_FILE=str(models_file),
            AIRFLOW_URL=None,
            PAGERDUTY_ROUTING_KEY=ROUTING_KEY,
            PAGERDUTY_EVENTS_URL=pagerduty.url,
        )
        values.update(overrides)
        services = Services.from_settings(load_settings(**values), migrate=not made)
        made.append(services)
        return services

    yield make
    for services in made:
        services.store.dispose()


@pytest.fixture
def services(make_services):
    return make_services()


@pytest.fixture
def rollout_thread(services, slack):
    """The rollout's own thread in the model's channel, as the rollout controller opens it."""

    def open_thread(channel: str = "C0CHURN", text: str = "Rollout of churn: v42 replacing v41") -> str:
        return services.slack.chat_postMessage(channel=channel, text=text)["ts"]

    return open_thread
