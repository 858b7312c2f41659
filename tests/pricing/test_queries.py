"""Cheapest-fit queries over the stored table, and how old the answer is."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.pricing import service as pricing
from bot.integrations.price_list import Fetched, PriceRecord
from bot.pricing.service import Need
from bot.store.base import utcnow
from sandbox import price_catalog as catalog


def load(store, region="us-east-1", fetched_at=None, source="bulk"):
    records = [
        PriceRecord(region, s.instance_type, s.vcpu, s.memory_gib, s.gpus, None, catalog.price_in(s, region))
        for s in catalog.CATALOG
    ]
    return pricing.store_prices(store, Fetched(region=region, source=source, records=records), fetched_at)


def test_five_cheapest_that_fit_in_price_order_with_monthly_cost(store):
    load(store)
    q = pricing.quote(store, "us-east-1", Need(vcpu=2, memory_gib=8))
    assert [o.instance_type for o in q.offers] == [
        "ml.t2.large", "ml.m5.large", "ml.r5.large", "ml.c5.xlarge", "ml.t2.xlarge"]
    best = q.offers[0]
    assert best.usd_per_hour == pytest.approx(0.111)
    assert best.usd_per_month == pytest.approx(0.111 * 730)
    assert all(o.vcpu >= 2 and o.memory_gib >= 8 for o in q.offers)


def test_gpu_need_only_offers_gpu_instances(store):
    load(store)
    q = pricing.quote(store, "us-east-1", Need(vcpu=4, memory_gib=16, gpus=4))
    assert [o.instance_type for o in q.offers] == ["ml.g4dn.12xlarge", "ml.g5.12xlarge", "ml.g5.48xlarge",
                                                    "ml.p4d.24xlarge"]


def test_fractional_needs_round_up_to_real_instances(store):
    load(store)
    q = pricing.quote(store, "us-east-1", Need(vcpu=0.5, memory_gib=60.5, gpus=0))
    assert q.offers[0].instance_type == "ml.r5.2xlarge"  # 64 GiB at $0.605 beats p3.2xlarge's 61 GiB at $3.825


def test_nothing_fits_names_the_largest_available(store):
    load(store)
    q = pricing.quote(store, "us-east-1", Need(vcpu=500, memory_gib=4096))
    assert q.offers == []
    assert q.largest.instance_type == "ml.p4d.24xlarge" and q.largest.memory_gib == 1152


def test_no_prices_for_a_region_tells_how_to_fetch_them(store):
    load(store, "us-east-1")
    with pytest.raises(pricing.NoPrices, match=r"modelbot prices refresh --region eu-west-1"):
        pricing.quote(store, "eu-west-1", Need(2, 8))


def test_regions_are_kept_apart(store):
    load(store, "us-east-1")
    load(store, "ap-northeast-1")
    tokyo = pricing.quote(store, "ap-northeast-1", Need(2, 8)).offers[0]
    virginia = pricing.quote(store, "us-east-1", Need(2, 8)).offers[0]
    assert tokyo.instance_type == virginia.instance_type == "ml.t2.large"
    assert tokyo.usd_per_hour == pytest.approx(0.111 * 1.29, abs=1e-4)


def test_age_and_staleness(store):
    load(store, fetched_at=utcnow() - timedelta(hours=5, minutes=10), source="api")
    q = pricing.quote(store, "us-east-1", Need(2, 8))
    assert q.freshness() == "prices fetched 5 hours ago from the AWS Price List API"
    assert not q.stale()
    load(store, fetched_at=utcnow() - timedelta(days=8))
    q = pricing.quote(store, "us-east-1", Need(2, 8))
    assert q.stale() and "8 days ago from the AWS bulk price list file" in q.freshness()


def test_regions_due_for_refresh(store):
    now = utcnow()
    load(store, "us-east-1", fetched_at=now - timedelta(hours=2))
    load(store, "eu-west-1", fetched_at=now - timedelta(hours=30))
    due = pricing.regions_due(store, ["us-east-1", "eu-west-1", "us-west-2"], now=now)
    assert due == {"eu-west-1": "prices 1 day old", "us-west-2": "no prices stored"}


def test_region_that_failed_recently_waits_before_the_next_try(store):
    pricing._record_failure(store, "us-west-2", "bulk", "network down")
    assert pricing.regions_due(store, ["us-west-2"]) == {}
    later = utcnow() + pricing.RETRY_AFTER + timedelta(minutes=1)
    assert pricing.regions_due(store, ["us-west-2"], now=later) == {"us-west-2": "no prices stored"}


def test_region_codes_are_known_without_network():
    assert pricing.is_known_region("us-east-1")
    assert pricing.is_known_region("eu-central-1")
    assert not pricing.is_known_region("mars-north-1")


def test_sql_answer_matches_a_plain_python_scan(store):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    load(store)
    table = [(s.instance_type, s.vcpu, s.memory_gib, s.gpus, catalog.price_in(s, "us-east-1")) for s in catalog.CATALOG]

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(vcpu=st.floats(0.25, 200), memory=st.floats(0.5, 1500), gpus=st.integers(0, 9))
    def check(vcpu, memory, gpus):
        q = pricing.quote(store, "us-east-1", Need(vcpu, memory, gpus))
        fits = sorted((p, t) for t, v, m, g, p in table if v >= vcpu and m >= memory and g >= gpus)
        assert [o.instance_type for o in q.offers] == [t for _, t in fits[:5]]
        if not fits:
            assert q.largest.instance_type == "ml.p4d.24xlarge"

    check()
