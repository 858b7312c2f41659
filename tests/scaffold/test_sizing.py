"""The serving instance: the cheapest fitting one from modelbot's cached prices when there are any (said so),
the smallest general-purpose one otherwise (said so too), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.integrations.price_list import Fetched, PriceRecord
from bot.pricing import service as pricing
from bot.scaffold import sizing
from bot.store import Store
from bot.store.base import utcnow
from sandbox import price_catalog as catalog
from tests.scaffold.conftest import modelbot


@pytest.fixture
def priced(database_url, monkeypatch):
    """modelbot's database with us-east-1's prices, cached two days ago."""
    store = Store(database_url)
    store.migrate()
    records = [PriceRecord("us-east-1", s.instance_type, s.vcpu, s.memory_gib, s.gpus, None,
                           catalog.price_in(s, "us-east-1")) for s in catalog.CATALOG]
    pricing.store_prices(store, Fetched(region="us-east-1", source="bulk", records=records),
                         utcnow() - timedelta(days=2))
    monkeypatch.setenv("DATABASE_URL", database_url)
    sizing.forget()
    yield store
    store.dispose()


def cheapest(vcpu: float, memory_gib: float) -> str:
    fits = [s for s in catalog.CATALOG if s.vcpu >= vcpu and s.memory_gib >= memory_gib and not s.gpus]
    return min(fits, key=lambda s: (catalog.price_in(s, "us-east-1"), s.instance_type)).instance_type


def test_the_cheapest_fitting_instance_from_cached_prices(priced, tmp_path):
    choice = sizing.choose(2, 8, "us-east-1")
    assert choice.priced and choice.instance_type == cheapest(2, 8) == "ml.t2.large"
    assert "is the cheapest SageMaker hosting instance with at least 2 vCPU, 8 GiB in us-east-1: $0.111/h" in choice.why
    assert "modelbot's cached prices: prices fetched 2 days ago from the AWS bulk price list file" in choice.why
    code, out, err = modelbot("new", "churn", str(tmp_path / "churn"), "--defaults", "--data", "serving_vcpu=2",
                              "--data", "serving_memory_gib=8")
    assert code == 0, err
    assert 'instance_type = "ml.t2.large"' in (tmp_path / "churn" / "models.toml").read_text()
    assert "Serving instance: ml.t2.large is the cheapest SageMaker hosting instance" in out
    # An instance the price list has, but too small: refused, naming both.
    code, _, err = modelbot("new", "churn", str(tmp_path / "small"), "--defaults", "--data", "serving_memory_gib=8",
                            "--data", "serving_instance_type=ml.t2.medium")
    assert code == 2 and "ml.t2.medium has 2 vCPU, 4 GiB; serving needs at least 1 vCPU, 8 GiB" in err
    code, _, err = modelbot("new", "churn", str(tmp_path / "made-up"), "--defaults", "--data",
                            "serving_instance_type=ml.m99.large")
    assert code == 2 and "ml.m99.large is not in us-east-1's SageMaker hosting price list" in err


def test_another_region_without_prices_gets_the_general_purpose_default(priced):
    choice = sizing.choose(2, 8, "eu-west-1")
    assert not choice.priced and choice.instance_type == "ml.m5.large"
    assert "no SageMaker prices are cached in modelbot's database for eu-west-1" in choice.why
    assert "`modelbot prices refresh --region eu-west-1` caches them" in choice.why


def test_without_a_database_the_default_fits_and_says_why(tmp_path):
    assert sizing.choose(1, 2, "us-east-1").instance_type == "ml.m5.large"
    assert sizing.choose(6, 20, "us-east-1").instance_type == "ml.m5.2xlarge"
    choice = sizing.choose(1, 2, "us-east-1")
    assert "does not exist here" in choice.why and not choice.priced
    assert not any(tmp_path.iterdir())  # reading prices never creates modelbot's database
