"""A fake for SageMaker's UpdateEndpoint at the HTTP level, in front of moto (which lacks it).

It speaks SageMaker's JSON 1.1 protocol: UpdateEndpoint is answered here, by re-creating the endpoint on moto
with the new endpoint config (so DescribeEndpoint then shows the new config and its variants, as on AWS once
the update has finished); every other request is forwarded to moto byte for byte. Point boto3 at it with
AWS_ENDPOINT_URL_SAGEMAKER, leaving CloudWatch and the rest on moto.

Where moto is less strict than AWS, the proxy does what AWS does:
- UpdateEndpoint is refused while a variant it would remove, or give another instance type, is still a scalable
  target in Application Auto Scaling (read from moto);
- UpdateEndpointWeightsAndCapacities keeps a variant's instance count (and weight) when the request does not
  name one (moto would blank them);
- pointed at with AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING too, RegisterScalableTarget brings the variant's
  instance count inside its new [min, max], as Application Auto Scaling does (`apply_capacity = False` leaves
  it, for a test that plays the instances coming up itself).
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

_REGION = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/[a-z0-9-]+/")
SCALING_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}


class SageMakerProxy:
    def __init__(self, moto_url: str, latency: float = 0.0):
        self.moto_url = moto_url.rstrip("/")
        self.latency = latency  # seconds added to every call, as a real region's round trip
        self.update_calls: list[dict] = []
        self.operations: list[str] = []  # every SageMaker operation seen, in order (e.g. "DescribeEndpoint")
        self.weight_calls: list[dict] = []  # every UpdateEndpointWeightsAndCapacities request body, in order
        self._faults: dict[str, list[tuple[str, str]]] = {}  # operation -> (error type, message) to answer
        self.apply_capacity = True  # RegisterScalableTarget moves the instance count into [min, max]
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
            self.apply_capacity = True

    def fail_next(self, operation: str, kind: str = "ValidationException", message: str = "injected",
                  count: int = 1) -> None:
        """The next `count` calls of `operation` (e.g. "UpdateEndpointWeightsAndCapacities") get this error."""
        with self._lock:
            self._faults.setdefault(operation, []).extend([(kind, message)] * count)

    def _fault(self, operation: str) -> tuple[str, str] | None:
        with self._lock:
            queue = self._faults.get(operation)
            return queue.pop(0) if queue else None

    def _moto(self, region: str, service: str = "sagemaker"):
        return boto3.client(service, region_name=region, endpoint_url=self.moto_url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def _still_scalable(self, region: str, endpoint: dict, config: dict) -> list[str]:
        """Variants the update would remove or change the instance type of that are still scalable targets."""
        sm = self._moto(region)
        try:
            current = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        except ClientError:
            return []
        types = {pv["VariantName"]: pv.get("InstanceType") for pv in config.get("ProductionVariants", [])}
        leaving = [pv["VariantName"] for pv in current.get("ProductionVariants", [])
                   if pv["VariantName"] not in types or types[pv["VariantName"]] != pv.get("InstanceType")]
        if not leaving:
            return []
        ids = {f"endpoint/{endpoint['EndpointName']}/variant/{v}": v for v in leaving}
        found = self._moto(region, "application-autoscaling").describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=list(ids), ScalableDimension=SCALING_DIMENSION)
        return sorted(ids[t["ResourceId"]] for t in found.get("ScalableTargets", []) if t["ResourceId"] in ids)

    def fill_weights_request(self, body: dict, region: str) -> dict:
        """AWS leaves what a DesiredWeightsAndCapacities entry does not name as it is; moto blanks it."""
        try:
            variants = {v["VariantName"]: v for v in
                        self._moto(region).describe_endpoint(EndpointName=body.get("EndpointName", ""))["ProductionVariants"]}
        except ClientError:
            return body
        for entry in body.get("DesiredWeightsAndCapacities", []):
            now = variants.get(entry.get("VariantName"), {})
            if "DesiredWeight" not in entry and "CurrentWeight" in now:
                entry["DesiredWeight"] = now["CurrentWeight"]
            if "DesiredInstanceCount" not in entry and now.get("CurrentInstanceCount") is not None:
                entry["DesiredInstanceCount"] = now["CurrentInstanceCount"]
        return body

    def apply_scaling_bounds(self, body: dict, region: str) -> None:
        """After RegisterScalableTarget: the variant's instance count moved inside [min, max] at once."""
        rid = body.get("ResourceId", "")
        parts = rid.split("/")
        if not self.apply_capacity or len(parts) != 4 or parts[0] != "endpoint" or parts[2] != "variant":
            return
        found = self._moto(region, "application-autoscaling").describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[rid], ScalableDimension=SCALING_DIMENSION)["ScalableTargets"]
        sm = self._moto(region)
        try:
            variants = sm.describe_endpoint(EndpointName=parts[1])["ProductionVariants"]
        except ClientError:
            return
        if not found:
            return
        low, high = found[0].get("MinCapacity"), found[0].get("MaxCapacity")
        entries = []
        for v in variants:
            count = v.get("CurrentInstanceCount")
            if v["VariantName"] == parts[3] and count is not None:
                count = max(low or count, min(high or count, count))
            entries.append({"VariantName": v["VariantName"], "DesiredWeight": v.get("CurrentWeight", 0.0),
                            **({"DesiredInstanceCount": count} if count is not None else {})})
        sm.update_endpoint_weights_and_capacities(EndpointName=parts[1], DesiredWeightsAndCapacities=entries)

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
        scalable = self._still_scalable(region, endpoint, sm.describe_endpoint_config(EndpointConfigName=config))
        if scalable:
            return 400, {"__type": "ValidationException",
                         "message": f"The variant(s) \"[{', '.join(scalable)}]\" must be deregistered as scalable "
                                    "targets with AWS Application Auto Scaling before they can be removed or have "
                                    "their instance type updated."}
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
        match = _REGION.search(self.headers.get("Authorization", ""))
        region = match.group(1) if match else "us-east-1"
        if target == "SageMaker.UpdateEndpoint":
            status, body = self.proxy.update_endpoint(json.loads(raw or b"{}"), region)
            self._send(status, json.dumps(body).encode(), {"Content-Type": "application/x-amz-json-1.1"})
            return
        if target == "SageMaker.UpdateEndpointWeightsAndCapacities":
            raw = json.dumps(self.proxy.fill_weights_request(json.loads(raw or b"{}"), region)).encode()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        resp = requests.post(self.proxy.moto_url + self.path, data=raw, headers=headers, timeout=30)
        if target.endswith(".RegisterScalableTarget") and resp.status_code == 200:
            self.proxy.apply_scaling_bounds(json.loads(raw or b"{}"), region)
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
