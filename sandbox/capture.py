"""SageMaker's data capture, as the sandbox's endpoints do it: the requests and predictions of successful
invocations, written as JSON Lines under the endpoint config's DestinationS3Uri.

Layout and record, as SageMaker writes them (and as bot/quality reads them):

    <DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm>-<ss>-<mmm>-<uuid>.jsonl
    {"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                                       "data": "{\"instances\": [...]}", "encoding": "JSON"},
                     "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                                        "data": "{\"predictions\": [...]}", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceId": "<the caller's InferenceId, when given>",
                       "inferenceTime": "2025-03-04T09:12:01Z"},
     "eventVersion": "0"}

`InitialSamplingPercentage` of the invocations are captured; CaptureOptions say which of Input and Output;
CaptureContentTypeHeader says which content types are written as text (JSON, CSV), the rest as BASE64. Like
SageMaker, records are buffered and written in files every few seconds (SageMaker: every few minutes), one file
per hour folder; times come from the sandbox's clock (sandbox/world_clock.py). A failed invocation (the model
answered 4XX/5XX) is not captured.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

FLUSH_SECONDS = 5.0


def _encoded(body: bytes, content_type: str, header: dict) -> tuple[str, str]:
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in [t.lower() for t in header.get("JsonContentTypes", [])]:
        return body.decode("utf-8", errors="replace"), "JSON"
    if kind in [t.lower() for t in header.get("CsvContentTypes", [])]:
        return body.decode("utf-8", errors="replace"), "CSV"
    return base64.b64encode(body).decode(), "BASE64"


def capture_record(config: dict, *, request: bytes, request_type: str, response: bytes, response_type: str,
                   when: datetime, inference_id: str | None = None, event_id: str | None = None) -> dict:
    """One data capture record for `config` (an endpoint config's DataCaptureConfig)."""
    header = config.get("CaptureContentTypeHeader") or {}
    modes = {o.get("CaptureMode") for o in config.get("CaptureOptions") or [{"CaptureMode": "Input"},
                                                                             {"CaptureMode": "Output"}]}
    data: dict = {}
    if "Input" in modes:
        text, encoding = _encoded(request, request_type, header)
        data["endpointInput"] = {"observedContentType": request_type, "mode": "INPUT", "data": text,
                                 "encoding": encoding}
    if "Output" in modes:
        text, encoding = _encoded(response, response_type, header)
        data["endpointOutput"] = {"observedContentType": response_type, "mode": "OUTPUT", "data": text,
                                  "encoding": encoding}
    meta = {"eventId": event_id or str(uuid.uuid4())}
    if inference_id:
        meta["inferenceId"] = inference_id
    meta["inferenceTime"] = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    return {"captureData": data, "eventMetadata": meta, "eventVersion": "0"}


class CaptureWriter:
    """Buffers capture records per hour folder and writes them to S3 every FLUSH_SECONDS (and at stop)."""

    def __init__(self, s3, clock: Callable[[], datetime], flush_seconds: float = FLUSH_SECONDS,
                 rng: random.Random | None = None):
        self.s3, self.clock, self.flush_seconds = s3, clock, flush_seconds
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._buffer: dict[tuple[str, str], list[str]] = defaultdict(list)  # (bucket, hour folder) -> lines
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0  # records written to S3
        self.errors: list[str] = []

    def capture(self, config: dict | None, endpoint: str, variant: str, **record) -> bool:
        """Buffers the invocation's record when the config captures it (sampled). True when captured."""
        if not config or not config.get("EnableCapture", True) or not config.get("DestinationS3Uri"):
            return False
        if self.rng.random() * 100 >= float(config.get("InitialSamplingPercentage", 100)):
            return False
        bucket, _, prefix = config["DestinationS3Uri"].removeprefix("s3://").partition("/")
        with self._lock:  # stamped and appended together: every buffer stays in clock order
            when = self.clock()
            line = json.dumps(capture_record(config, when=when, **record), separators=(",", ":"))
            folder = f"{prefix.rstrip('/') + '/' if prefix.strip('/') else ''}{endpoint}/{variant}/{when:%Y/%m/%d/%H}/"
            self._buffer[(bucket, folder)].append(line)
        return True

    def flush(self) -> int:
        """Writes what is buffered, oldest hour first (a reader that lists meanwhile sees a prefix of them)."""
        with self._lock:
            taken, self._buffer = self._buffer, defaultdict(list)
            now = self.clock()
        written = 0
        for (bucket, folder), lines in sorted(taken.items(), key=lambda item: item[0][1].rsplit("/", 5)[-5:]):
            key = f"{folder}{now:%M-%S}-{now.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
            try:
                self.s3.put_object(Bucket=bucket, Key=key, Body=("\n".join(lines) + "\n").encode(),
                                   ContentType="application/jsonl")
                written += len(lines)
            except (BotoCoreError, ClientError) as exc:
                self.errors = (self.errors + [f"S3 PutObject s3://{bucket}/{key}: {exc}; {len(lines)} records "
                                              "were not captured"])[-5:]
                log.warning("data capture: %s", self.errors[-1])
        self.written += written
        return written

    def start(self) -> "CaptureWriter":
        self._thread = threading.Thread(target=self._loop, name="data-capture", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
