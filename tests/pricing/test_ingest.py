"""Refreshing prices from the Price List Query API and from the bulk offer file, both over HTTP from the fake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.integrations import price_list
from bot.pricing import service as pricing
from bot.integrations.aws import AwsClients
from bot.integrations.price_list import PriceList, PriceListError, UnknownRegion
from bot.pricing.tables import InstancePrice, PriceRefresh
from sandbox import price_catalog as catalog
from sandbox.price_list import bulk_offer_file

FIXTURES = Path(__file__).parent / "fixtures"


def prices() -> PriceList:
    """A fresh one per call, as a process builds it: its client reads this test's credentials and endpoints."""
    return PriceList(AwsClients())


def stored(store, region: str) -> dict[str, InstancePrice]:
    with store.session() as s:
        return {r.instance_type: r for r in s.scalars(select(InstancePrice).where(InstancePrice.region == region))}


def refreshes(store) -> list[PriceRefresh]:
    with store.session() as s:
        return list(s.scalars(select(PriceRefresh).order_by(PriceRefresh.id)))


def test_api_refresh_stores_every_hosting_price_of_the_region_across_pages(store, with_credentials):
    client = price_list.pricing_client()  # endpoint from AWS_ENDPOINT_URL_PRICING, as an operator would set it
    fetched = price_list.fetch_from_api("us-east-1", client=client, page_size=7)
    result = pricing.store_prices(store, fetched)

    rows = stored(store, "us-east-1")
    # 31 hosting instance types, fetched over several 7-record pages; training, notebook, other regions and
    # the free-tier $0 entry stay out.
    assert {t: r.usd_per_hour for t, r in rows.items()} == catalog.expected_hosting("us-east-1")
    assert result.rows == 31 and result.source == "api"
    assert result.skipped_reasons == {"zero price": 1}
    m5 = rows["ml.m5.xlarge"]
    assert (m5.vcpu, m5.memory_gib, m5.gpus, m5.gpu_memory_gib) == (4, 16, 0, None)
    assert stored(store, "eu-west-1") == {}


def test_gpu_memory_comes_from_sagemaker_core_table_where_the_price_list_says_na(store, with_credentials):
    pricing.refresh_region(store, prices(), "us-east-1", "api")
    rows = stored(store, "us-east-1")
    # The price list says "N/A" for these; sagemaker.core's table knows them (total MiB / 1024).
    assert rows["ml.g4dn.12xlarge"].gpus == 4 and rows["ml.g4dn.12xlarge"].gpu_memory_gib == 64
    assert rows["ml.p4d.24xlarge"].gpu_memory_gib == 320
    # Not in the table: the price list's per-GPU figure is used.
    assert rows["ml.g6.xlarge"].gpu_memory_gib == 24


def test_bulk_file_gives_the_same_table_as_the_api(store, with_credentials):
    api = price_list.fetch_from_api("eu-west-1", client=price_list.pricing_client(), page_size=100)
    seen: list[tuple[int, int | None]] = []
    bulk = price_list.fetch_from_bulk("eu-west-1", progress=lambda done, total: seen.append((done, total)))

    assert sorted(bulk.records, key=lambda r: r.instance_type) == sorted(api.records, key=lambda r: r.instance_type)
    assert {r.instance_type: r.usd_per_hour for r in bulk.records} == catalog.expected_hosting("eu-west-1")
    # Read in pieces as it arrived, ending at the Content-Length.
    total = seen[-1][1]
    assert total and seen[-1][0] == total
    paths = [r["path"] for r in with_credentials.requests if r["kind"] == "bulk"]
    assert paths == ["/offers/v1.0/aws/AmazonSageMaker/current/region_index.json",
                     f"/offers/v1.0/aws/AmazonSageMaker/{catalog.VERSION}/eu-west-1/index.json"]


def test_bulk_file_with_terms_before_products_is_still_read(without_credentials):
    records = catalog.region_records("us-east-1")
    doc = bulk_offer_file(records, terms_first=True)
    assert list(doc)[-1] == "products"
    without_credentials.bulk_overrides["us-east-1"] = json.dumps(doc).encode()
    fetched = price_list.fetch_from_bulk("us-east-1")
    assert {r.instance_type: r.usd_per_hour for r in fetched.records} == catalog.expected_hosting("us-east-1")


def test_without_credentials_auto_uses_the_bulk_file(store, without_credentials):
    assert price_list.has_aws_credentials() is False
    result = pricing.refresh_region(store, prices(), "us-east-1")
    assert result.source == "bulk" and result.rows == 31
    assert all(r["kind"] == "bulk" for r in without_credentials.requests)
    with store.session() as s:
        assert pricing.prices_as_of(s, "us-east-1")[1] == "bulk"


def test_with_credentials_auto_uses_the_api(store, with_credentials):
    result = pricing.refresh_region(store, prices(), "us-east-1")
    assert result.source == "api"
    assert {r["kind"] for r in with_credentials.requests} == {"api"}


def test_api_source_without_credentials_fails_with_a_message_naming_the_api(store, without_credentials):
    with pytest.raises(PriceListError, match="AWS Price List API.*not refreshed"):
        pricing.refresh_region(store, prices(), "us-east-1", "api")
    assert without_credentials.requests == []  # boto3 refuses to send an unsigned request


def test_unknown_region_bulk_names_the_region_and_the_known_ones(store, without_credentials):
    with pytest.raises(UnknownRegion) as err:
        pricing.refresh_region(store, prices(), "mars-north-1", "bulk")
    assert "mars-north-1" in str(err.value) and "us-east-1" in str(err.value)
    [attempt] = refreshes(store)
    assert attempt.region == "mars-north-1" and attempt.error and attempt.rows == 0


def test_unknown_region_api_returns_nothing_and_keeps_stored_prices(store, with_credentials):
    pricing.refresh_region(store, prices(), "us-east-1", "api")
    with pytest.raises(PriceListError, match="no SageMaker hosting prices for 'mars-north-1'"):
        pricing.refresh_region(store, prices(), "mars-north-1", "api")
    assert len(stored(store, "us-east-1")) == 31


def test_auto_with_credentials_falls_back_to_the_bulk_file_when_the_api_refuses(store, with_credentials):
    with_credentials.fail_page = 1
    result = pricing.refresh_region(store, prices(), "us-east-1", "auto")
    assert result.source == "bulk" and result.rows == 31


def test_malformed_records_are_skipped_and_counted(store, with_credentials):
    with_credentials.records += catalog.malformed_records("us-east-1")
    with_credentials.raw_entries.append("{this is not json")
    result = pricing.refresh_region(store, prices(), "us-east-1", "api")

    assert result.rows == 31
    assert result.skipped_reasons == {"malformed": 4, "no price": 1, "zero price": 1}
    assert "6 records skipped" in result.summary()
    [refresh] = refreshes(store)
    assert (refresh.rows, refresh.skipped, refresh.source, refresh.error) == (31, 6, "api", None)
    assert not any(t.startswith("ml.x") for t in stored(store, "us-east-1"))


def test_malformed_records_in_the_bulk_file_are_skipped_and_counted(store, without_credentials):
    records = catalog.region_records("us-east-1") + catalog.malformed_records("us-east-1")
    doc = bulk_offer_file(records, extra_products={"BROKENSKU": "not an object"})
    without_credentials.bulk_overrides["us-east-1"] = json.dumps(doc).encode()
    result = pricing.refresh_region(store, prices(), "us-east-1", "bulk")
    assert result.rows == 31
    assert result.skipped_reasons == {"malformed": 4, "no price": 1, "zero price": 1}


def test_failed_refresh_midway_keeps_the_old_prices(store, with_credentials):
    pricing.refresh_region(store, prices(), "us-east-1", "api")
    before = {t: r.usd_per_hour for t, r in stored(store, "us-east-1").items()}
    # New prices on the server, but the third page fails: nothing of the new set may be stored.
    with_credentials.reset([catalog.record(s, "us-east-1", usd=9.99) for s in catalog.CATALOG])
    with_credentials.fail_page = 3
    with pytest.raises(PriceListError, match="InternalErrorException"):
        price_list.fetch_from_api("us-east-1", client=price_list.pricing_client(), page_size=5)
    with_credentials.fail_page = 1
    with pytest.raises(PriceListError):
        pricing.refresh_region(store, prices(), "us-east-1", "api")
    assert {t: r.usd_per_hour for t, r in stored(store, "us-east-1").items()} == before


def test_refresh_replaces_the_region_rows(store, with_credentials):
    pricing.refresh_region(store, prices(), "us-east-1", "api")
    pricing.refresh_region(store, prices(), "eu-west-1", "api")
    smaller = [catalog.record(s, "us-east-1", usd=1.5) for s in catalog.CATALOG[:3]]
    with_credentials.reset(smaller)
    pricing.refresh_region(store, prices(), "us-east-1", "api")
    assert {t: r.usd_per_hour for t, r in stored(store, "us-east-1").items()} == {
        s.instance_type: 1.5 for s in catalog.CATALOG[:3]}
    assert len(stored(store, "eu-west-1")) == 31


def test_truncated_bulk_file_is_an_error_that_names_the_bulk_list(store, without_credentials):
    whole = json.dumps(bulk_offer_file(catalog.region_records("us-east-1"))).encode()
    without_credentials.bulk_overrides["us-east-1"] = whole[: len(whole) // 2]
    with pytest.raises(PriceListError, match="bulk price list for us-east-1 is not valid JSON"):
        pricing.refresh_region(store, prices(), "us-east-1", "bulk")


def test_unreachable_bulk_url_fails_fast_with_the_url(store, without_credentials, monkeypatch):
    monkeypatch.setenv("MODELBOT_PRICE_BULK_URL", "http://127.0.0.1:9")
    with pytest.raises(PriceListError, match="could not be reached.*127.0.0.1:9"):
        pricing.refresh_region(store, prices(), "us-east-1", "bulk")


def test_an_html_error_page_becomes_one_readable_line(store, with_credentials, monkeypatch):
    with_credentials.fail_page, with_credentials.fail_html = 1, True
    monkeypatch.setenv("MODELBOT_PRICE_BULK_URL", "http://127.0.0.1:9")
    with pytest.raises(PriceListError) as err:
        pricing.refresh_region(store, prices(), "us-east-1", "auto")
    message = str(err.value)
    assert "<html" not in message and "\n" not in message
    assert message.startswith("The AWS Price List API refused GetProducts for us-east-1 (500: ")
    assert "The bulk file failed too: The AWS bulk price list could not be reached" in message


def test_checked_in_offer_file_fixture_streams_from_disk():
    with open(FIXTURES / "AmazonSageMaker-us-west-2-offer.json", "rb") as fh:
        fetched = price_list.parse_offer_file(fh, "us-west-2")
    got = {r.instance_type: (r.vcpu, r.memory_gib, r.gpus, r.gpu_memory_gib, r.usd_per_hour) for r in fetched.records}
    assert got == {"ml.m5.large": (2, 8, 0, None, 0.115), "ml.g4dn.xlarge": (4, 16, 1, 16, 0.736)}
    assert dict(fetched.skipped) == {"zero price": 1}  # the Training price is not counted: it is not hosting


def test_checked_in_get_products_record_parses():
    doc = json.loads((FIXTURES / "get_products_record.json").read_text())
    record = price_list.parse_record(doc["product"], doc["terms"]["OnDemand"], "us-west-2", {})
    assert (record.instance_type, record.vcpu, record.memory_gib, record.usd_per_hour) == ("ml.m5.large", 2, 8, 0.115)
