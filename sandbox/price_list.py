"""A local stand-in for AWS's price list, over real HTTP, since moto does not emulate it.

- The Price List Query API: AWS JSON 1.1 protocol. POST / with X-Amz-Target "AWSPriceListService.GetProducts"
  and a JSON body {ServiceCode, Filters: [{Type: "TERM_MATCH", Field, Value}], NextToken, MaxResults,
  FormatVersion}; answers {"FormatVersion": "aws_v1", "PriceList": ["<json text>", ...], "NextToken": ...}.
  Errors come back as HTTP 400 {"__type": "...Exception", "Message": ...}, which botocore turns into
  ClientError. Requests must be SigV4-signed, as the real service demands.
- The public bulk offer files: GET /offers/v1.0/aws/AmazonSageMaker/current/region_index.json, then the
  region's file at its currentVersionUrl, sent in chunks with a Content-Length.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sandbox import price_catalog as catalog

TARGET_PREFIX = "AWSPriceListService."
SERVICE = "AmazonSageMaker"
INDEX_PATH = f"/offers/v1.0/aws/{SERVICE}/current/region_index.json"


def bulk_offer_file(records: list[dict], *, terms_first: bool = False, extra_products: dict | None = None) -> dict:
    """The region offer file shape: products keyed by sku; terms.OnDemand keyed by sku, then by offer term."""
    products = {r["product"]["sku"]: r["product"] for r in records}
    products.update(extra_products or {})
    on_demand = {r["product"]["sku"]: r["terms"].get("OnDemand", {}) for r in records if r["terms"].get("OnDemand")}
    sections: list[tuple[str, Any]] = [("products", products), ("terms", {"OnDemand": on_demand, "Reserved": {}})]
    if terms_first:
        sections.reverse()
    doc: dict[str, Any] = {
        "formatVersion": "v1.0",
        "disclaimer": "This pricing list is for informational purposes only.",
        "offerCode": SERVICE,
        "version": catalog.VERSION,
        "publicationDate": catalog.PUBLISHED,
    }
    doc.update(sections)
    return doc


def region_index(regions: list[str]) -> dict:
    return {
        "formatVersion": "v1.0",
        "disclaimer": "This pricing list is for informational purposes only.",
        "publicationDate": catalog.PUBLISHED,
        "regions": {
            r: {"regionCode": r, "currentVersionUrl": f"/offers/v1.0/aws/{SERVICE}/{catalog.VERSION}/{r}/index.json"}
            for r in regions
        },
    }


class FakePriceList:
    def __init__(self, records: list[dict] | None = None):
        self.records: list[dict] = list(records or [])
        self.raw_entries: list[str] = []  # extra PriceList strings sent as they are (e.g. not JSON)
        self.bulk_overrides: dict[str, bytes] = {}  # region -> the exact offer file bytes to serve
        self.fail_page: int | None = None  # answer this GetProducts page (1-based) with a 500
        self.fail_html = False  # ... as an HTML error page, the way a proxy or a stand-in server does
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --
    def start(self) -> "FakePriceList":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                fake._post(self)

            def do_GET(self):
                fake._get(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-price-list", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self, records: list[dict] | None = None) -> None:
        with self._lock:
            self.records = list(records or [])
            self.raw_entries = []
            self.bulk_overrides = {}
            self.fail_page = None
            self.fail_html = False
            self.requests = []

    def regions(self) -> list[str]:
        return sorted({r["product"]["attributes"].get("regionCode") for r in self.records} - {None})

    # -- the Query API --
    def _post(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        target = h.headers.get("X-Amz-Target", "")
        with self._lock:
            self.requests.append({"kind": "api", "target": target})
        if not h.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 "):
            return _json(h, 403, {"__type": "MissingAuthenticationTokenException", "message": "Missing Authentication Token"})
        if target != TARGET_PREFIX + "GetProducts":
            return _json(h, 400, {"__type": "UnknownOperationException", "message": f"unknown operation {target}"})
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            return _json(h, 400, {"__type": "SerializationException", "Message": "body is not JSON"})
        if req.get("ServiceCode") != SERVICE:
            return _json(h, 400, {"__type": "NotFoundException", "Message": f"Service {req.get('ServiceCode')} not found"})
        size = int(req.get("MaxResults") or 100)
        if not 1 <= size <= 100:
            return _json(h, 400, {"__type": "InvalidParameterException", "Message": "MaxResults must be 1..100"})
        try:
            start = int(base64.b64decode(req["NextToken"]).decode().split(":")[1]) if req.get("NextToken") else 0
        except (ValueError, IndexError):
            return _json(h, 400, {"__type": "InvalidNextTokenException", "Message": "The pagination token is invalid"})
        filters = req.get("Filters") or []
        for f in filters:
            if f.get("Type") != "TERM_MATCH":
                return _json(h, 400, {"__type": "InvalidParameterException", "Message": f"bad filter type {f.get('Type')}"})
        with self._lock:
            entries = [json.dumps(r) for r in self.records if _matches(r, filters)] + list(self.raw_entries)
            page_number = start // size + 1
            fail = self.fail_page == page_number
        if fail and self.fail_html:
            return _send(h, 500, b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
                                 b"<h1>Internal Server Error</h1>\n", content_type="text/html")
        if fail:
            return _json(h, 500, {"__type": "InternalErrorException", "Message": "An internal error occurred"})
        page = entries[start:start + size]
        out: dict[str, Any] = {"FormatVersion": "aws_v1", "PriceList": page}
        if start + size < len(entries):
            out["NextToken"] = base64.b64encode(f"page:{start + size}".encode()).decode()
        _json(h, 200, out)

    # -- bulk files --
    def _get(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0]
        with self._lock:
            self.requests.append({"kind": "bulk", "path": path})
            regions = self.regions() + sorted(self.bulk_overrides)
        if path == INDEX_PATH:
            return _send(h, 200, json.dumps(region_index(sorted(set(regions)))).encode())
        prefix = f"/offers/v1.0/aws/{SERVICE}/{catalog.VERSION}/"
        if path.startswith(prefix) and path.endswith("/index.json"):
            region = path[len(prefix):-len("/index.json")]
            with self._lock:
                data = self.bulk_overrides.get(region)
                if data is None and region in regions:
                    mine = [r for r in self.records if r["product"]["attributes"].get("regionCode") == region]
                    data = json.dumps(bulk_offer_file(mine), indent=1).encode()
            if data is not None:
                return _send(h, 200, data, chunked_writes=True)
        _send(h, 404, b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code></Error>", content_type="application/xml")


def _matches(doc: dict, filters: list[dict]) -> bool:
    product = doc["product"]
    attrs = product.get("attributes", {})
    for f in filters:
        field, value = f.get("Field"), f.get("Value")
        actual = product.get("productFamily") if field == "productFamily" else attrs.get(field)
        if actual is None or str(actual).lower() != str(value).lower():
            return False
    return True


def _json(h: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
    _send(h, status, json.dumps(payload).encode(), content_type="application/x-amz-json-1.1")


def _send(h: BaseHTTPRequestHandler, status: int, data: bytes, *, content_type: str = "application/json",
          chunked_writes: bool = False) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(data)))
    h.send_header("x-amzn-RequestId", "fake-0000")
    h.end_headers()
    if not chunked_writes:
        h.wfile.write(data)
        return
    for i in range(0, len(data), 64 * 1024):  # the client sees the file arrive in pieces, as from S3
        h.wfile.write(data[i:i + 64 * 1024])
        h.wfile.flush()
