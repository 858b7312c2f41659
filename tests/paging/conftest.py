"""Fixtures for paging: a fake PagerDuty, and Services wired to the Slack emulator and a fresh database."""

from __future__ import annotations

import pytest

from sandbox.pagerduty import FakePagerDuty

ROUTING_KEY = "R0UTINGKEY0123456789abcdef012345"


@pytest.fixture
def pagerduty(monkeypatch):
    from bot.integrations import pagerduty as client

    monkeypatch.setattr(client, "BACKOFF_SECONDS", 0.05)  # real backoff shape, test-sized waits
    fake = FakePagerDuty().start()
    yield fake
    fake.stop()


@pytest.fixture
def make_services(make_services, pagerduty):
    """The shared factory, with PagerDuty configured unless a test passes PAGERDUTY_ROUTING_KEY=None."""

    def make(**overrides):
        return make_services(**{"PAGERDUTY_ROUTING_KEY": ROUTING_KEY, "PAGERDUTY_EVENTS_URL": pagerduty.url,
                                **overrides})

    return make


@pytest.fixture
def services(make_services):
    return make_services()


@pytest.fixture
def rollout_thread(services, slack):
    """The rollout's own thread in the model's channel, as the rollout controller opens it."""

    def open_thread(channel: str = "C0CHURN", text: str = "Rollout of churn: v42 replacing v41") -> str:
        return services.slack.chat_postMessage(channel=channel, text=text)["ts"]

    return open_thread
