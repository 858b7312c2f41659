from __future__ import annotations

import pytest

from bot.config import Settings
from bot.services import Services
from tests.harness import BOT_TOKEN


def make_services(slack, database_url, models_file, airflow_url=None, **extra) -> Services:
    settings = Settings(_env_file=None, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_API_URL=slack.api_url,
                        DATABASE_URL=database_url, MODELS_FILE=str(models_file), AIRFLOW_URL=airflow_url, **extra)
    return Services.from_settings(settings)


@pytest.fixture
def services(slack, database_url, models_file):
    s = make_services(slack, database_url, models_file)
    yield s
    s.store.dispose()
