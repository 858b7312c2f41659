"""Shared fixtures: moto server, Slack emulator, databases (SQLite always, PostgreSQL when reachable)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from sandbox.scripted_airflow import FakeAirflow
from sandbox.update_endpoint_proxy import SageMakerProxy
from tests.harness import free_port

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL")


@pytest.fixture(scope="session")
def moto_url():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url, monkeypatch):
    """boto3 in this process pointed at moto (fresh state per test); a fresh Services builds fresh boto3 clients."""
    import requests

    from tests.harness import aws_env

    for k, v in aws_env(moto_url).items():
        monkeypatch.setenv(k, v)
    requests.post(f"{moto_url}/moto-api/reset", timeout=5)
    yield moto_url


@pytest.fixture(scope="session")
def slack_server():
    from sandbox.slack_emulator import SlackEmulator

    emulator = SlackEmulator()
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def slack(slack_server):
    slack_server.reset()
    return slack_server


def _postgres_reachable(url: str) -> str | None:
    try:
        import psycopg

        from bot.config import normalise_database_url

        conninfo = normalise_database_url(url).replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, connect_timeout=3):
            return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _fresh_postgres_database(url: str) -> tuple[str, callable]:
    import psycopg
    from sqlalchemy.engine import make_url

    from bot.config import normalise_database_url

    base = make_url(normalise_database_url(url))
    name = f"modelbot_t_{uuid.uuid4().hex[:12]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return base.set(database=name).render_as_string(hide_password=False), drop


def provision_database(kind: str, directory: Path):
    """A fresh, empty database of the kind; returns (url, cleanup). Skips the PostgreSQL pass, saying why."""
    if kind == "sqlite":
        return f"sqlite:///{directory / 'modelbot.db'}", lambda: None
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL pass skipped: TEST_DATABASE_URL is not set (.ci/run sets it)")
    problem = _postgres_reachable(POSTGRES_URL)
    if problem:
        pytest.skip(f"PostgreSQL pass skipped: {POSTGRES_URL} is not reachable ({problem})")
    return _fresh_postgres_database(POSTGRES_URL)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path):
    """A fresh, empty database of each kind; the PostgreSQL pass is skipped, with the reason, without one."""
    url, cleanup = provision_database(request.param, tmp_path)
    yield url
    cleanup()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'modelbot.db'}"


MODELS_TOML = """
[defaults]
region = "us-east-1"
alert_channel = "C0ALERTS"
oncall = "S0ONCALL"
admins = ["U0ADMIN"]

[models.churn]
dag_id = "churn_lifecycle"
endpoint = "churn-prod"
channel = "C0CHURN"
metric = "auc"
direction = "maximize"
owners = ["U0ALICE"]
oncall = "U0BOB"
vcpu = 2
memory_gib = 8
gpus = 0

[models.churn.rollout]
steps = [10, 25, 50, 100]
min_requests = 500
margin = 0.002
alpha = 0.01
max_step_minutes = 120
bake_minutes = 60

[models.fraud]
dag_id = "fraud_lifecycle"
endpoint = "fraud-prod"
channel = "C0FRAUD"
metric = "logloss"
direction = "minimize"
owners = ["U0CAROL"]
"""


@pytest.fixture
def models_file(tmp_path: Path) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(MODELS_TOML)
    return path


@pytest.fixture
def make_services(slack, database_url, models_file):
    """make_services(**settings) -> in-process Services on the test's database, Slack emulator and models file.

    The first call applies the migrations; every Services made is disposed of after the test.
    """
    from bot.config import Settings
    from bot.services import Services
    from tests.harness import BOT_TOKEN, SIGNING_SECRET

    made = []

    def make(**overrides):
        values = dict(
            SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_APP_TOKEN=None,
            SLACK_API_URL=slack.api_url, DATABASE_URL=database_url, MODELS_FILE=str(models_file),
            AIRFLOW_URL=None, PAGERDUTY_ROUTING_KEY=None,
        )
        values.update(overrides)
        services = Services.from_settings(Settings(_env_file=None, **values), migrate=not made)
        made.append(services)
        return services

    yield make
    for services in made:
        services.store.dispose()


@pytest.fixture
def fake():
    """A scripted Airflow on a real socket, for one test."""
    server = FakeAirflow().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sagemaker_proxy(moto_url):
    """SageMaker's JSON protocol in front of moto, answering UpdateEndpoint (which moto lacks); counts calls."""
    proxy = SageMakerProxy(moto_url).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def proxied_aws(aws, sagemaker_proxy, monkeypatch):
    """moto reset; SageMaker through the UpdateEndpoint proxy, everything else straight to moto."""
    sagemaker_proxy.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", sagemaker_proxy.url)
    yield aws
