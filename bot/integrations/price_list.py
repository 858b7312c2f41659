"""Reading SageMaker hosting prices from AWS: the Price List Query API, or the public bulk offer file.

Both sources carry the same product records (product.attributes + terms.OnDemand); this module turns them
into PriceRecord rows and counts what it had to skip. Storage and queries live in bot/pricing.py.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, BinaryIO, Callable, Iterable, Iterator

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from bot.integrations import aws
from bot.errors import ExternalError

SERVICE_CODE = "AmazonSageMaker"
PRODUCT_FAMILY = "ML Instance"
HOSTING = "Hosting"
# The Price List Query API is served from us-east-1 whatever region the prices are for.
PRICING_API_REGION = "us-east-1"
DEFAULT_BULK_URL = "https://pricing.us-east-1.amazonaws.com"
REGION_INDEX_PATH = f"/offers/v1.0/aws/{SERVICE_CODE}/current/region_index.json"
HTTP_TIMEOUT_SECONDS = 30
# The whole bulk download (region index and offer file) must finish in this time, however steadily bytes
# trickle in: a server sending one byte every few seconds never trips a read timeout. Ten minutes is several
# times what the largest region's file takes on an ordinary link; MODELBOT_PRICE_BULK_DEADLINE_SECONDS
# overrides it.
BULK_DEADLINE_ENV = "MODELBOT_PRICE_BULK_DEADLINE_SECONDS"
BULK_DEADLINE_SECONDS = 10 * 60
CHUNK = 256 * 1024

# progress(done, total): records (API, total unknown: None) or bytes (bulk file, total from Content-Length).
Progress = Callable[[int, int | None], None]


class PriceListError(ExternalError):
    """The Price List could not be read; the message names the source and says what was not done."""


class UnknownRegion(PriceListError):
    def __init__(self, region: str, known: Iterable[str]):
        self.region = region
        self.known = sorted(known)
        sample = ", ".join(self.known[:8]) + (", …" if len(self.known) > 8 else "")
        super().__init__(f"The AWS price list has no SageMaker prices for region {region!r}. Known regions: {sample}")


class MalformedRecord(ValueError):
    """One product record cannot be used; the message says which field, `reason` is what refreshes count."""

    def __init__(self, message: str, reason: str = "malformed"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PriceRecord:
    region: str
    instance_type: str
    vcpu: float
    memory_gib: float
    gpus: int
    gpu_memory_gib: float | None
    usd_per_hour: float


@dataclass
class Fetched:
    """What one source gave for one region."""

    region: str
    source: str  # api | bulk
    records: list[PriceRecord] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> count

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


# --- record parsing --------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"^\s*([0-9][0-9,]*(?:\.[0-9]+)?)")


def _number(value: Any, what: str) -> float:
    """'16 GiB', '1,952 GiB', '4', Decimal('4') -> float; 'N/A', '', None are malformed."""
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        result = float(value)
    else:
        match = _NUMBER.match(str(value or ""))
        if not match:
            raise MalformedRecord(f"{what} is {value!r}, not a number")
        result = float(match.group(1).replace(",", ""))
    if not math.isfinite(result) or result < 0:
        raise MalformedRecord(f"{what} is {value!r}")
    return result


def _optional_number(value: Any) -> float | None:
    try:
        return _number(value, "")
    except MalformedRecord:
        return None


def is_hosting_product(product: dict, region: str | None = None) -> bool:
    if product.get("productFamily") != PRODUCT_FAMILY:
        return False
    attrs = product.get("attributes") or {}
    # platoinstancetype names the SageMaker feature billed (Hosting, Training, Notebook, ...); component is the
    # fallback for a record without it.
    kind = attrs.get("platoinstancetype") or attrs.get("component")
    if kind != HOSTING:
        return False
    return region is None or attrs.get("regionCode") in (None, region)


def hourly_usd(on_demand: dict) -> float:
    """The hourly USD price from one sku's OnDemand terms ({offerTermCode: {priceDimensions: {...}}})."""
    if not isinstance(on_demand, dict) or not on_demand:
        raise MalformedRecord("no on-demand price", "no price")
    for term in on_demand.values():
        dims = term.get("priceDimensions") if isinstance(term, dict) else None
        if not isinstance(dims, dict):
            raise MalformedRecord("on-demand term without priceDimensions", "no price")
        for dim in dims.values():
            if not isinstance(dim, dict) or str(dim.get("unit", "")).lower() not in ("hrs", "hours", "hour"):
                continue
            usd = (dim.get("pricePerUnit") or {}).get("USD")
            try:
                price = float(Decimal(str(usd)))
            except (InvalidOperation, ValueError):
                raise MalformedRecord(f"price per hour is {usd!r}") from None
            if not math.isfinite(price) or price < 0:
                raise MalformedRecord(f"price per hour is {usd!r}")
            return price
    raise MalformedRecord("no hourly price dimension", "no price")


def parse_record(product: dict, on_demand: dict, region: str, gpu_table: dict[str, dict]) -> PriceRecord:
    """One hosting product and its OnDemand terms -> PriceRecord; raises MalformedRecord."""
    attrs = product.get("attributes")
    if not isinstance(attrs, dict):
        raise MalformedRecord("product without attributes")
    instance_type = str(attrs.get("instanceType") or attrs.get("instanceName") or "").strip()
    if not instance_type.startswith("ml."):
        # Some records carry the type only in the usage type, e.g. "USE1-Host:ml.m5.large".
        _, _, tail = str(attrs.get("usagetype", "")).partition(":")
        instance_type = tail.strip()
    if not instance_type.startswith("ml."):
        raise MalformedRecord("no instance type")
    vcpu = _number(attrs.get("vCpu"), "vCpu")
    memory = _number(attrs.get("memory"), "memory")
    if vcpu <= 0 or memory <= 0:
        raise MalformedRecord(f"vCpu {vcpu} / memory {memory} GiB")
    listed_gpus = _optional_number(attrs.get("gpu"))
    if listed_gpus is None:
        listed_gpus = _optional_number(attrs.get("physicalGpu"))
    known = gpu_table.get(instance_type)
    gpus = int(listed_gpus) if listed_gpus is not None else int(known["Count"]) if known else 0
    # sagemaker.core's table states total GPU memory in MiB without ambiguity; the price list's gpuMemory is
    # often "N/A" and its unit is undocumented (read here as GiB per GPU), so the table wins where it knows
    # the instance and the price list fills the rest.
    if known and known.get("TotalGpuMemoryInMiB"):
        gpu_memory: float | None = round(float(known["TotalGpuMemoryInMiB"]) / 1024, 2)
    else:
        per_gpu = _optional_number(attrs.get("gpuMemory"))
        gpu_memory = per_gpu * gpus if per_gpu and gpus else None
    price = hourly_usd(on_demand)
    if price == 0:
        raise MalformedRecord("zero price (free tier or placeholder)", "zero price")
    return PriceRecord(
        region=region,
        instance_type=instance_type,
        vcpu=vcpu,
        memory_gib=memory,
        gpus=gpus,
        gpu_memory_gib=gpu_memory,
        usd_per_hour=price,
    )


def gpu_table(region: str) -> dict[str, dict]:
    """sagemaker.core's instance GPU table for a region (hardware is the same everywhere: fall back to us-east-1)."""
    try:
        from sagemaker.core import instance_types_gpu_info
    except ImportError:  # the SDK is a declared dependency; without it GPU memory is just unknown
        return {}
    try:
        return instance_types_gpu_info.retrieve(region) or instance_types_gpu_info.retrieve("us-east-1")
    except ValueError:
        return {}


def gpu_table_regions() -> list[str]:
    """The regions sagemaker.core's GPU table knows, read from the same file its retrieve() reads."""
    try:
        from sagemaker.core import instance_types_gpu_info
    except ImportError:
        return []
    path = os.path.join(os.path.dirname(instance_types_gpu_info.__file__), "image_uri_config", "instance_gpu_info.json")
    try:
        with open(path, encoding="utf-8") as fh:
            return sorted(json.load(fh))
    except (OSError, ValueError):
        return []


class _Collector:
    """Keeps one record per instance type and counts everything skipped, with the reason."""

    def __init__(self, region: str, source: str):
        self.fetched = Fetched(region=region, source=source)
        self._seen: set[str] = set()
        self._gpus = gpu_table(region)

    def add(self, product: dict, on_demand: dict) -> None:
        try:
            record = parse_record(product, on_demand, self.fetched.region, self._gpus)
        except MalformedRecord as exc:
            self.fetched.skipped[exc.reason] += 1
            return
        if record.instance_type in self._seen:
            self.fetched.skipped["duplicate"] += 1
            return
        self._seen.add(record.instance_type)
        self.fetched.records.append(record)

    def malformed(self) -> None:
        self.fetched.skipped["malformed"] += 1


# --- the Price List Query API -----------------------------------------------------------------------------------


def pricing_client(endpoint_url: str | None = None):
    """A fresh client (not cached: tests and the CLI may point it elsewhere). boto3 itself honours
    AWS_ENDPOINT_URL_PRICING / AWS_ENDPOINT_URL when endpoint_url is None."""
    # Two attempts, not four: a failed refresh is tried again by the job later, and nobody waits on it.
    return boto3.session.Session().client(
        "pricing", region_name=PRICING_API_REGION, endpoint_url=endpoint_url, config=aws.client_config(max_attempts=2)
    )


def has_aws_credentials() -> bool:
    try:
        return boto3.session.Session().get_credentials() is not None
    except BotoCoreError:
        return False


def api_filters(region: str) -> list[dict[str, str]]:
    return [
        {"Type": "TERM_MATCH", "Field": "productFamily", "Value": PRODUCT_FAMILY},
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "platoinstancetype", "Value": HOSTING},
    ]


def fetch_from_api(region: str, *, client=None, page_size: int = 100, progress: Progress | None = None) -> Fetched:
    """Every hosting price of a region, page by page (GetProducts, NextToken)."""
    client = client or pricing_client()
    collector = _Collector(region, "api")
    seen = 0
    try:
        pages = client.get_paginator("get_products").paginate(
            ServiceCode=SERVICE_CODE,
            Filters=api_filters(region),
            FormatVersion="aws_v1",
            PaginationConfig={"PageSize": page_size},
        )
        for page in pages:
            for raw in page.get("PriceList", []):
                seen += 1
                try:
                    doc = json.loads(raw) if isinstance(raw, str) else raw
                    product, terms = doc["product"], doc.get("terms") or {}
                    if not isinstance(product, dict) or not isinstance(terms, dict):
                        raise TypeError
                except (ValueError, KeyError, TypeError):
                    collector.malformed()
                    continue
                if not is_hosting_product(product, region):
                    # The filters should have left these out; a stray one is not ours to price.
                    collector.fetched.skipped["not hosting"] += 1
                    continue
                collector.add(product, terms.get("OnDemand") or {})
            if progress:
                progress(seen, None)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise PriceListError(
            f"The AWS Price List API refused GetProducts for {region} ({err.get('Code', 'error')}: "
            f"{_first_line(err.get('Message', exc))}); prices for {region} were not refreshed."
        ) from None
    except BotoCoreError as exc:
        raise PriceListError(
            f"The AWS Price List API could not be reached ({exc}); prices for {region} were not refreshed."
        ) from None
    return collector.fetched


# --- the public bulk offer file ---------------------------------------------------------------------------------


def _first_line(message, limit: int = 200) -> str:
    """An error body can be a whole HTML page (a proxy, a stand-in server): keep the first real line."""
    lines = [re.sub(r"<[^>]*>", "", line).strip() for line in str(message).splitlines()]
    lines = [line for line in lines if line]
    text = lines[0] if lines else str(message).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bulk_base_url() -> str:
    return (os.environ.get("MODELBOT_PRICE_BULK_URL") or DEFAULT_BULK_URL).rstrip("/")


def bulk_deadline_seconds() -> float:
    raw = os.environ.get(BULK_DEADLINE_ENV, "").strip()
    try:
        value = float(raw) if raw else BULK_DEADLINE_SECONDS
    except ValueError:
        value = BULK_DEADLINE_SECONDS
    return value if value > 0 else BULK_DEADLINE_SECONDS


class _Deadline:
    """One wall-clock budget for every request of a bulk download."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def timeout(self) -> float:
        """A socket timeout that also ends a blocked read at the deadline (never 0: that means non-blocking)."""
        return max(0.05, min(HTTP_TIMEOUT_SECONDS, self.left()))

    def check(self, url: str) -> None:
        if self.left() <= 0:
            raise TimeoutError(f"download of {url} did not finish within its {self.seconds:g} s deadline")


def _socket_of(resp):
    # http.client keeps the socket behind its buffered reader; a file:// or stand-in response has none.
    return getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)


def _open(url: str, what: str, region: str, deadline: _Deadline | None = None):
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "modelbot"})
    try:
        if deadline is not None:
            deadline.check(url)
        return urllib.request.urlopen(request, timeout=deadline.timeout() if deadline else HTTP_TIMEOUT_SECONDS)
    except urllib.error.HTTPError as exc:
        raise PriceListError(
            f"The AWS bulk price list answered HTTP {exc.code} for the {what} ({url}); "
            f"prices for {region} were not refreshed."
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PriceListError(
            f"The AWS bulk price list could not be reached for the {what} ({url}: {reason}); "
            f"prices for {region} were not refreshed."
        ) from None


def region_file_url(region: str, base_url: str | None = None, deadline: _Deadline | None = None) -> str:
    base = (base_url or bulk_base_url()).rstrip("/")
    index_url = base + REGION_INDEX_PATH
    with _open(index_url, "region index", region, deadline) as resp:
        try:
            if deadline is None:
                index = json.load(resp)
            else:
                index = json.loads(_CountingReader(resp, None, None, deadline, index_url).read_all())
            regions = index["regions"]
        except (TimeoutError, OSError) as exc:
            raise PriceListError(
                f"The AWS bulk price list's region index ({index_url}) could not be read ({exc}); "
                f"prices for {region} were not refreshed."
            ) from None
        except (ValueError, KeyError, TypeError):
            raise PriceListError(
                f"The AWS bulk price list's region index ({index_url}) is not in the expected shape; "
                f"prices for {region} were not refreshed."
            ) from None
    entry = regions.get(region) if isinstance(regions, dict) else None
    if not entry or not entry.get("currentVersionUrl"):
        raise UnknownRegion(region, regions if isinstance(regions, dict) else [])
    url = entry["currentVersionUrl"]
    return url if url.startswith(("http://", "https://")) else base + url


class _CountingReader:
    """A file-like over the HTTP response that reports bytes read and enforces the overall deadline.

    Each read returns whatever one socket read brings (read1), with the socket's timeout cut to the time left:
    a plain read(256 KiB) would wait inside http.client for all 256 KiB, one trickled byte at a time, and
    never come back to look at the deadline."""

    def __init__(self, resp: BinaryIO, total: int | None, progress: Progress | None, deadline: _Deadline,
                 url: str):
        self._resp, self._total, self._progress, self._deadline, self._url = resp, total, progress, deadline, url
        self._sock = _socket_of(resp)
        self.done = 0

    def read(self, size: int = -1) -> bytes:
        self._deadline.check(self._url)
        if self._sock is not None:
            self._sock.settimeout(self._deadline.timeout())
        want = CHUNK if size is None or size < 0 else size
        read1 = getattr(self._resp, "read1", None)
        try:
            data = read1(want) if read1 is not None else self._resp.read(want)
        except TimeoutError:
            self._deadline.check(self._url)  # the deadline, not the read timeout, is what ran out
            raise
        self.done += len(data)
        if self._progress:
            self._progress(self.done, self._total)
        return data

    def read_all(self) -> bytes:
        parts = []
        while chunk := self.read():
            parts.append(chunk)
        return b"".join(parts)


def iter_offer_file(stream, want: Callable[[str, str], bool] = lambda kind, sku: True) -> Iterator[tuple[str, str, Any]]:
    """Stream an offer file, yielding ("product", sku, dict) for products.<sku> and ("terms", sku, dict) for
    terms.OnDemand.<sku> as each completes, without holding the file; ("bad", kind, None) for a value of the
    wrong type. Values that `want(kind, sku)` declines are skipped unbuilt. The real file is hundreds of MB:
    it is never loaded whole."""
    import ijson
    from ijson.common import ObjectBuilder

    builder: ObjectBuilder | None = None
    skipping = False
    depth = 0
    pending: tuple[str, str] | None = None  # (kind, sku) named by the last map key
    for prefix, event, value in ijson.parse(stream):
        if builder is not None or skipping:
            if builder is not None:
                builder.event(event, value)
            if event in ("start_map", "start_array"):
                depth += 1
            elif event in ("end_map", "end_array"):
                depth -= 1
                if depth == 0:
                    if builder is not None:
                        yield pending[0], pending[1], builder.value
                    builder, skipping, pending = None, False, None
            continue
        if pending is not None:
            if event == "start_map":
                depth = 1
                if want(*pending):
                    builder = ObjectBuilder()
                    builder.event(event, value)
                else:
                    skipping = True
                continue
            yield "bad", pending[0], None
            pending = None
        if event == "map_key":
            if prefix == "products":
                pending = ("product", value)
            elif prefix == "terms.OnDemand":
                pending = ("terms", value)


def parse_offer_file(stream, region: str) -> Fetched:
    collector = _Collector(region, "bulk")
    products: dict[str, dict] = {}
    any_product = False
    # Offer files list products before terms, but nothing promises it: prices seen first are kept too.
    early_terms: dict[str, dict] = {}
    terms_seen: set[str] = set()

    def want(kind: str, sku: str) -> bool:
        return kind == "product" or not any_product or sku in products

    for kind, sku, obj in iter_offer_file(stream, want):
        if kind == "bad":
            collector.malformed()
        elif kind == "product":
            any_product = True
            if is_hosting_product(obj, region):
                products[sku] = obj
        else:
            if sku in products:
                terms_seen.add(sku)
                collector.add(products[sku], obj)
            else:
                early_terms[sku] = obj
    for sku, product in products.items():
        if sku not in terms_seen:
            collector.add(product, early_terms.get(sku, {}))
    return collector.fetched


def fetch_from_bulk(region: str, *, base_url: str | None = None, progress: Progress | None = None,
                    deadline_seconds: float | None = None) -> Fetched:
    """The region's offer file, found through the region index and parsed as a stream, all of it within one
    wall-clock deadline (bulk_deadline_seconds() unless given)."""
    deadline = _Deadline(deadline_seconds or bulk_deadline_seconds())
    url = region_file_url(region, base_url, deadline)
    with _open(url, "region offer file", region, deadline) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        reader = _CountingReader(resp, total, progress, deadline, url)
        try:
            return parse_offer_file(reader, region)
        except (TimeoutError, OSError) as exc:
            raise PriceListError(
                f"The AWS bulk price list download failed ({exc}); prices for {region} were not refreshed."
            ) from None
        except Exception as exc:  # ijson raises its own error types for a truncated or invalid file
            if type(exc).__module__.startswith("ijson"):
                raise PriceListError(
                    f"The AWS bulk price list for {region} is not valid JSON ({exc}); "
                    f"prices for {region} were not refreshed."
                ) from None
            raise


class PriceList:
    """AWS's SageMaker hosting prices, from the Price List API or the public bulk offer file; built once where
    the services are assembled (the API client comes from the shared AwsClients) and handed in."""

    def __init__(self, clients: aws.AwsClients, *, bulk_url: str | None = None):
        self._clients = clients
        self.bulk_url = bulk_url

    def api_client(self):
        # Two attempts, not four: a failed refresh is tried again by the job later, and nobody waits on it.
        return self._clients.client("pricing", PRICING_API_REGION, attempts=2)

    def has_credentials(self) -> bool:
        return has_aws_credentials()

    def from_api(self, region: str, *, progress: Progress | None = None) -> Fetched:
        return fetch_from_api(region, client=self.api_client(), progress=progress)

    def from_bulk(self, region: str, *, progress: Progress | None = None) -> Fetched:
        return fetch_from_bulk(region, base_url=self.bulk_url, progress=progress)
