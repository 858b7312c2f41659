"""A fake for SageMaker's UpdateEndpoint at the HTTP level, in front of moto (which lacks it).

It speaks SageMaker's JSON 1.1 protocol: UpdateEndpoint is answered here, by re-creating the endpoint on moto
with the new endpoint config (so DescribeEndpoint then shows the new config and its variants, as on AWS once
the update has finished); every other request is forwarded to moto byte for byte. Point boto3 at it with
AWS_ENDPOINT_URL_SAGEMAKER, leaving CloudWatch and the rest on moto.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import requests
from botocore.exceptions import ClientError

_REGION = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/sagemaker/")
_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}


class SageMakerProxy:
    def __init__(self, moto_url: str, latency: float = 0.0):
        self.moto_url = moto_url.rstrip("/")
        self.latency = latency  # seconds added to every call, as a real region's round trip
        self.update_calls: list[dict] = []
        self.operations: list[str] = []  # every SageMaker operation seen, in order (e.g. "DescribeEndpoint")
        self.weight_calls: list[dict] = []  # every UpdateEndpointWeightsAndCapacities request body, in order
        self._faults: dict[str, list[tuple[str, str]]] = {}  # operation -> (error type, message) to answer
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "SageMakerProxy":
        handler = type("Handler", (_Handler,), {"proxy": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.update_calls.clear()
            self.operations.clear()
            self.weight_calls.clear()
            self._faults.clear()

    def fail_next(self, operation: str, kind: str = "ValidationException", message: str = "injected",
                  count: int = 1) -> None:
        """The next `count` calls of `operation` (e.g. "UpdateEndpointWeightsAndCapacities") get this error."""
        with self._lock:
            self._faults.setdefault(operation, []).extend([(kind, message)] * count)

    def _fault(self, operation: str) -> tuple[str, str] | None:
        with self._lock:
            queue = self._faults.get(operation)
            return queue.pop(0) if queue else None

    def _moto(self, region: str):
        return boto3.client("sagemaker", region_name=region, endpoint_url=self.moto_url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def update_endpoint(self, body: dict, region: str) -> tuple[int, dict]:
        with self._lock:
            self.update_calls.append(dict(body, region=region))
        name, config = body.get("EndpointName"), body.get("EndpointConfigName")
        if not name or not config:
            return 400, {"__type": "ValidationException", "message": "EndpointName and EndpointConfigName are required"}
        sm = self._moto(region)
        try:
            endpoint = sm.describe_endpoint(EndpointName=name)
        except ClientError:
            return 400, {"__type": "ValidationException",
                         "message": f"Could not find endpoint \"arn:aws:sagemaker:{region}:123456789012:endpoint/{name}\"."}
        try:
            sm.describe_endpoint_config(EndpointConfigName=config)
        except ClientError:
            return 400, {"__type": "ValidationException", "message": f"Could not find endpoint configuration \"{config}\"."}
        if endpoint["EndpointStatus"] != "InService":
            return 400, {"__type": "ValidationException",
                         "message": f"Cannot update in-progress endpoint \"{endpoint['EndpointArn']}\"."}
        # The update has finished at once: the endpoint now runs the new config's variants and weights.
        sm.delete_endpoint(EndpointName=name)
        sm.create_endpoint(EndpointName=name, EndpointConfigName=config)
        return 200, {"EndpointArn": endpoint["EndpointArn"]}


class _Handler(BaseHTTPRequestHandler):
    proxy: SageMakerProxy

    def do_GET(self) -> None:
        """GET /_proxy/operations: how many calls of each operation were seen (for benchmarks in another process)."""
        if self.path != "/_proxy/operations":
            self._send(404, b"{}", {"Content-Type": "application/json"})
            return
        with self.proxy._lock:
            counts: dict[str, int] = {}
            for op in self.proxy.operations:
                counts[op] = counts.get(op, 0) + 1
        self._send(200, json.dumps(counts).encode(), {"Content-Type": "application/json"})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target", "")
        operation = target.rpartition(".")[2]
        if self.proxy.latency:
            time.sleep(self.proxy.latency)
        with self.proxy._lock:
            self.proxy.operations.append(operation)
            if operation == "UpdateEndpointWeightsAndCapacities":
                try:
                    self.proxy.weight_calls.append(json.loads(raw or b"{}"))
                except ValueError:
                    self.proxy.weight_calls.append({})
        fault = self.proxy._fault(operation)
        if fault is not None:
            body = json.dumps({"__type": fault[0], "message": fault[1]}).encode()
            self._send(400, body, {"Content-Type": "application/x-amz-json-1.1"})
            return
        if target == "SageMaker.UpdateEndpoint":
            match = _REGION.search(self.headers.get("Authorization", ""))
            status, body = self.proxy.update_endpoint(json.loads(raw or b"{}"), match.group(1) if match else "us-east-1")
            self._send(status, json.dumps(body).encode(), {"Content-Type": "application/x-amz-json-1.1"})
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        resp = requests.post(self.proxy.moto_url + self.path, data=raw, headers=headers, timeout=30)
        keep = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_HEADERS | {"content-encoding"}}
        self._send(resp.status_code, resp.content, keep)

    def _send(self, status: int, data: bytes, headers: dict) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args) -> None:
        pass
