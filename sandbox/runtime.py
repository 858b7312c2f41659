"""SageMaker Runtime's InvokeEndpoint for the sandbox, in front of the variants' modelbot-serve (sandbox/hosting.py).

It speaks the REST protocol boto3's `sagemaker-runtime` client speaks (point it here with
AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME or endpoint_url): `POST /endpoints/<name>/invocations` with the body, its
Content-Type, and optionally X-Amzn-SageMaker-Target-Variant and X-Amzn-SageMaker-Inference-Id. Like SageMaker:

- the variant is the one named, else drawn by the endpoint's current weights; the answer names it in
  x-Amzn-Invoked-Production-Variant;
- the request goes to that variant's container as POST /invocations, with the inference id;
- a 2XX answer is passed on, and captured when the endpoint config captures (sandbox/capture.py);
- a 4XX/5XX answer of the container is a `ModelError` (HTTP 424) carrying OriginalStatusCode and the
  container's body as OriginalMessage, which is what botocore raises for it;
- an unknown endpoint or variant is a `ValidationError`; a container still starting is `ServiceUnavailable`.

GET /state answers what hosting runs (per endpoint and variant: its server, its state, what it answered) and
what was captured; the sandbox's page shows it.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import urllib3

if TYPE_CHECKING:  # hosting.py's main() starts this server: the types only, no import cycle
    from sandbox.capture import CaptureWriter
    from sandbox.hosting import Hosting

ACCOUNT = "123456789012"
INVOKE = re.compile(r"^/endpoints/([^/]+)/invocations$")
MODEL_TIMEOUT_SECONDS = 60.0  # SageMaker's invocation timeout for real-time endpoints
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
STARTING = "is starting"  # in the message of a ServiceUnavailable for a container that will serve soon


def _log_url(endpoint: str, region: str) -> str:
    return (f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:"
            f"group=/aws/sagemaker/Endpoints/{endpoint}")


class Runtime:
    """InvokeEndpoint's decisions, apart from HTTP (tests call it directly)."""

    def __init__(self, hosting: Hosting, capture: CaptureWriter, rng: random.Random | None = None):
        self.hosting, self.capture = hosting, capture
        self.rng = rng or random.Random()
        self.http = urllib3.PoolManager(maxsize=16, retries=False)

    def invoke(self, endpoint: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict, bytes]:
        """(status, headers, body) as SageMaker Runtime answers."""
        found = self.hosting.endpoint(endpoint)
        if found is None:
            return _error(400, "ValidationError", f"Endpoint {endpoint} of account {ACCOUNT} not found.")
        if len(body) > MAX_PAYLOAD_BYTES:
            return _error(413, "ValidationError", f"Request payload of {len(body)} bytes is over the limit of "
                                                  f"{MAX_PAYLOAD_BYTES} bytes (6 MB) for real-time inference.")
        variant = headers.get("x-amzn-sagemaker-target-variant")
        if variant:
            if variant not in found["variants"]:
                return _error(400, "ValidationError", f"Variant {variant} not found in endpoint {endpoint}; it "
                                                      f"has {', '.join(sorted(found['variants']))}.")
        else:
            variant = self.hosting.choose_variant(endpoint, self.rng)
            if variant is None:
                return _error(400, "ValidationError", f"Endpoint {endpoint} has no variant with a weight above 0: "
                                                      "name one with TargetVariant.")
        container = self.hosting.container(endpoint, variant)
        if container is None or container.state in ("starting", "stopped"):
            return _error(503, "ServiceUnavailable", f"Variant {variant} of endpoint {endpoint} {STARTING}: its "
                                                     "container does not answer /ping yet. Try again shortly.")
        if container.state == "failed":
            return _model_error(endpoint, variant, 502, f"the container of variant {variant} did not start: "
                                                        f"{container.failure}".encode())
        content_type = headers.get("content-type") or "application/octet-stream"
        inference_id = headers.get("x-amzn-sagemaker-inference-id")
        forward = {"Content-Type": content_type, "Accept": headers.get("accept") or "application/json"}
        if inference_id:
            forward["X-Amzn-SageMaker-Inference-Id"] = inference_id
        try:
            answer = self.http.request("POST", container.url + "/invocations", body=body, headers=forward,
                                       timeout=urllib3.Timeout(connect=5, read=MODEL_TIMEOUT_SECONDS))
        except urllib3.exceptions.HTTPError as exc:
            container.served.count(502, json.dumps({"error": f"no answer from the container: {exc}"}).encode())
            return _model_error(endpoint, variant, 502, f"no answer from the container: {exc}".encode())
        status, data = answer.status, answer.data
        answer_type = answer.headers.get("Content-Type", "application/json")
        container.served.count(status, data)
        if status >= 300:
            return _model_error(endpoint, variant, status, data)
        self.capture.capture(found.get("capture"), endpoint, variant, request=body, request_type=content_type,
                             response=data, response_type=answer_type, inference_id=inference_id)
        return 200, {"Content-Type": answer_type, "x-Amzn-Invoked-Production-Variant": variant}, data

    def state(self) -> dict:
        state = self.hosting.state()
        state["capture"] = {"written": self.capture.written, "errors": self.capture.errors[-3:]}
        return state


def _error(status: int, kind: str, message: str) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json", "x-amzn-ErrorType": f"{kind}:"}, \
        json.dumps({"message": message}).encode()


def _model_error(endpoint: str, variant: str, status: int, data: bytes) -> tuple[int, dict, bytes]:
    text = data.decode("utf-8", errors="replace")
    side = "client" if 400 <= status < 500 else "server"
    body = {"ErrorCode": f"{side.upper()}_ERROR_FROM_MODEL", "OriginalStatusCode": status, "OriginalMessage": text,
            "LogStreamArn": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{endpoint}",
            "message": f"Received {side} error ({status}) from primary with message \"{text[:1000]}\". See "
                       f"{_log_url(endpoint, 'us-east-1')} in account {ACCOUNT} for more information."}
    # The variant is named in a header, as on a success (the sandbox's page shows which one answered).
    return 424, {"Content-Type": "application/json", "x-amzn-ErrorType": "ModelError:",
                 "x-Amzn-Invoked-Production-Variant": variant}, json.dumps(body).encode()


class _Handler(BaseHTTPRequestHandler):
    runtime: Runtime
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3 expects

    def _send(self, status: int, headers: dict, body: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", f"{time.time_ns():x}")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        match = INVOKE.match(urllib.parse.urlsplit(self.path).path)
        if not match:
            self._send(*_error(404, "UnknownOperationException", f"no such operation: POST {self.path}"))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._send(*self.runtime.invoke(urllib.parse.unquote(match.group(1)), body, headers))

    def do_GET(self) -> None:
        if urllib.parse.urlsplit(self.path).path == "/state":
            self._send(200, {"Content-Type": "application/json"}, json.dumps(self.runtime.state()).encode())
        else:
            self._send(*_error(404, "UnknownOperationException", f"no such operation: GET {self.path}"))

    def log_message(self, *args: Any) -> None:
        pass


class RuntimeServer:
    def __init__(self, hosting: Hosting, capture: CaptureWriter, port: int = 0):
        self.runtime = Runtime(hosting, capture)
        handler = type("RuntimeHandler", (_Handler,), {"runtime": self.runtime})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="sagemaker-runtime", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "RuntimeServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
