"""The page's "Try a request" box: a JSON body sent to an endpoint with boto3's InvokeEndpoint, as an application
calls SageMaker, and the answer as the page shows it.

The sandbox's runtime (sandbox/runtime.py) routes it like SageMaker: to the variant named, else by the
endpoint's weights. A 4XX/5XX of the model reaches the caller as botocore's ModelError; the model's own answer
(modelbot-serve's JSON: `error` and, per failing field, `errors`) is in its OriginalMessage, which the page
lists field by field.
"""

from __future__ import annotations

import json
import threading
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

MAX_BODY_CHARS = 100_000


class TryRequest:
    def __init__(self, runtime_url: str | None, region: str = "us-east-1"):
        self.runtime_url, self.region = runtime_url, region
        self._client = None
        self._lock = threading.Lock()

    def client(self):
        with self._lock:
            if self._client is None:
                self._client = boto3.client("sagemaker-runtime", region_name=self.region, endpoint_url=self.runtime_url,
                                            config=Config(connect_timeout=3, read_timeout=70,
                                                          retries={"max_attempts": 1}))
            return self._client

    def send(self, endpoint: str, body: str, variant: str | None = None) -> tuple[int, dict]:
        """(HTTP status for the page's API, what the page shows)."""
        if not self.runtime_url:
            return 503, {"error": "the sandbox's SageMaker hosting is not running"}
        if not isinstance(body, str) or not body.strip():
            return 400, {"error": "write a request body first, e.g. {\"instances\": [{...}]}"}
        if len(body) > MAX_BODY_CHARS:
            return 400, {"error": f"the box takes up to {MAX_BODY_CHARS:,} characters"}
        kwargs = {"EndpointName": endpoint, "Body": body.encode(), "ContentType": "application/json",
                  "Accept": "application/json", "InferenceId": f"try-{time.time_ns()}"}
        if variant:
            kwargs["TargetVariant"] = variant
        started = time.perf_counter()
        try:
            answer = self.client().invoke_endpoint(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            shown = {"ok": False, "endpoint": endpoint, "exception": error.get("Code"),
                     "message": error.get("Message", str(exc)), "seconds": time.perf_counter() - started,
                     "inference_id": kwargs["InferenceId"]}
            if error.get("Code") == "ModelError":
                headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
                shown["variant"] = headers.get("x-amzn-invoked-production-variant")
                shown["status"] = int(exc.response.get("OriginalStatusCode") or 0)
                shown.update(_model_answer(exc.response.get("OriginalMessage") or ""))
            return 200, shown
        except BotoCoreError as exc:
            return 502, {"error": f"the sandbox's SageMaker runtime did not answer: {exc}"}
        raw = answer["Body"].read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
        return 200, {"ok": True, "status": 200, "endpoint": endpoint, "variant": answer.get("InvokedProductionVariant"),
                     "answer": parsed, "seconds": time.perf_counter() - started,
                     "inference_id": kwargs["InferenceId"]}


def _model_answer(original: str) -> dict:
    """modelbot-serve's error body: its `error` and field errors, and which variant said so when it is named."""
    try:
        body = json.loads(original)
    except ValueError:
        return {"error": original[:2000]}
    if not isinstance(body, dict):
        return {"error": original[:2000]}
    return {"error": body.get("error"), "errors": body.get("errors") or [], "more_errors": body.get("more_errors")}
