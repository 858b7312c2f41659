from __future__ import annotations

import pytest

from tests.runs.fake_airflow import fake  # noqa: F401  (the scripted Airflow, as a fixture)


@pytest.fixture
def services(make_services):
    return make_services()
