"""A migrated store on each database, for tests that write rollout rows by hand (also used by tests/charts)."""

from __future__ import annotations

import pytest

from bot.store import Store


@pytest.fixture
def store(database_url):
    store = Store(database_url)
    store.migrate()
    yield store
    store.dispose()
