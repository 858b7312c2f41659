"""Fixtures for the pricing tests: the fake price list, AWS environments, and migrated databases.

Databases: SQLite always; PostgreSQL too when TEST_DATABASE_URL is set, in a fresh database created for this
test session and dropped afterwards. Each test starts with empty pricing tables.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import delete

from sandbox import price_catalog as catalog
from sandbox.price_list import FakePriceList

REGIONS = ("us-east-1", "eu-west-1")


def default_records() -> list[dict]:
    return [r for region in REGIONS for r in catalog.region_records(region)]


@pytest.fixture(scope="session")
def _fake_server():
    fake = FakePriceList().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_prices(_fake_server) -> FakePriceList:
    _fake_server.reset(default_records())
    return _fake_server


def _clear_aws(monkeypatch, tmp_path) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    # No profile files and no instance metadata: the only credentials are the ones a test sets.
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def with_credentials(fake_prices, monkeypatch, tmp_path) -> FakePriceList:
    """Dummy AWS credentials; boto3's pricing client and the bulk URL both point at the fake."""
    _clear_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", fake_prices.url)
    monkeypatch.setenv("MODELBOT_PRICE_BULK_URL", fake_prices.url)
    return fake_prices


@pytest.fixture
def without_credentials(fake_prices, monkeypatch, tmp_path) -> FakePriceList:
    _clear_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", fake_prices.url)
    monkeypatch.setenv("MODELBOT_PRICE_BULK_URL", fake_prices.url)
    return fake_prices


def _postgres_database(url: str):
    """(url of a fresh database, drop function), or a skip reason string."""
    try:
        import psycopg
        from sqlalchemy.engine import make_url

        from bot.config import normalise_database_url

        base = make_url(normalise_database_url(url))
        admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
        name = f"modelbot_pricing_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        return f"PostgreSQL pass skipped: {url} is not reachable ({type(exc).__name__}: {exc})"

    def drop():
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return base.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def _migrated_url(request, tmp_path_factory):
    from bot.store.migrate import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('pricing-db') / 'modelbot.db'}"
        upgrade(url)
        yield url
        return
    pg = os.environ.get("TEST_DATABASE_URL")
    if not pg:
        pytest.skip("PostgreSQL pass skipped: TEST_DATABASE_URL is not set (.ci/run sets it)")
    made = _postgres_database(pg)
    if isinstance(made, str):
        pytest.skip(made)
    url, drop = made
    try:
        upgrade(url)
        yield url
    finally:
        from bot.store.engine import make_engine

        make_engine(url).dispose()
        drop()


def _fresh_store(url: str):
    from bot.store import Store
    from bot.pricing.tables import InstancePrice, PriceRefresh

    store = Store(url)
    with store.session() as s:
        s.execute(delete(InstancePrice))
        s.execute(delete(PriceRefresh))
    return store


@pytest.fixture
def store(_migrated_url):
    """A store on each database kind, pricing tables empty."""
    store = _fresh_store(_migrated_url)
    yield store
    store.dispose()


@pytest.fixture(scope="session")
def _sqlite_url(tmp_path_factory):
    from bot.store.migrate import upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('pricing-sqlite') / 'modelbot.db'}"
    upgrade(url)
    return url


@pytest.fixture
def sqlite_store(_sqlite_url):
    """SQLite only, for tests about replies and commands rather than SQL."""
    store = _fresh_store(_sqlite_url)
    yield store
    store.dispose()


MODELS = """
[defaults]
region = "us-east-1"

[models.churn]
endpoint = "churn-prod"
channel = "C0CHURN"
owners = ["U0ALICE"]
vcpu = 2
memory_gib = 8

[models.vision]
endpoint = "vision-prod"
channel = "C0VISION"
region = "eu-west-1"
vcpu = 4
memory_gib = 16
gpus = 1

[models.giant]
channel = "C0GIANT"
vcpu = 500
memory_gib = 4096

[models.fraud]
endpoint = "fraud-prod"
channel = "C0FRAUD"
"""


@pytest.fixture
def models_path(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(MODELS)
    return path


@pytest.fixture
def services(sqlite_store, models_path, monkeypatch):
    from bot.config import load_settings
    from bot.registry import load_registry
    from bot.services import Services

    monkeypatch.setenv("DATABASE_URL", sqlite_store.url)
    monkeypatch.setenv("MODELS_FILE", str(models_path))
    return Services(settings=load_settings(), registry=load_registry(models_path), store=sqlite_store, slack=None)
