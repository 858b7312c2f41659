"""The WSGI application SageMaker talks to: GET /ping, POST /invocations (and GET /schema for people).

One log line per invocation carries the inference id SageMaker sends (X-Amzn-SageMaker-Inference-Id), so a
caller's failed request can be found in CloudWatch Logs (answered ones through serving/access_log.py). A request that breaks REQUEST_SCHEMA is a 400 naming
each field; a prediction that breaks RESPONSE_SCHEMA is a 500, logged with its fields: a candidate that breaks
its contract shows in the endpoint's 4XX/5XX metrics, which the rollout judges.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback

from serving import payloads
from serving.access_log import AccessLog, clean_id
from serving.errors import RequestError, server_error, shorten
from serving.loading import ServedModel

log = logging.getLogger("modelbot.serve")

JSON_HEADERS = [("Content-Type", "application/json")]
INFERENCE_ID = "HTTP_X_AMZN_SAGEMAKER_INFERENCE_ID"


class ServingApp:
    def __init__(self, model: ServedModel, *, max_request_bytes: int, access_log: AccessLog | None = None):
        self.model = model
        self.max_request_bytes = max_request_bytes
        self.access_log = access_log or AccessLog()
        # One predict at a time per worker process: a data scientist's model need not be thread-safe. The other
        # threads keep answering /ping and parsing requests meanwhile; workers give the parallelism.
        self._predict_lock = threading.Lock()
        # (monotonic start, inference id) of the predict running now: the worker's watchdog reads it.
        self.predicting: tuple[float, str] | None = None
        self._ping = json.dumps({"status": "ok", "module": model.module_name}).encode()
        self._schema = json.dumps({"module": model.module_name, "request": model.request.schema,
                                   "response": model.response.schema,
                                   "features": list(model.features) if model.features else None}).encode()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/invocations":
            if method != "POST":
                return _respond(start_response, "405 Method Not Allowed", _error_body("POST only"),
                                [("Allow", "POST")])
            return self.invocations(environ, start_response)
        if path == "/ping" and method in ("GET", "HEAD"):
            # Answered only by a worker, and workers start after the model has loaded: 200 means ready.
            return _respond(start_response, "200 OK", self._ping if method == "GET" else b"")
        if path == "/schema" and method == "GET":
            return _respond(start_response, "200 OK", self._schema)
        return _respond(start_response, "404 Not Found",
                        _error_body("not found: this server answers GET /ping and POST /invocations"))

    def invocations(self, environ, start_response):
        started = time.perf_counter()
        inference_id = clean_id(environ.get(INFERENCE_ID))
        rows = 0
        try:
            body = self._read_body(environ)
            instances, prefix = payloads.decode(self.model, environ.get("CONTENT_TYPE", ""), body)
            rows = len(instances)
            payloads.check_request(self.model, instances, prefix)
            frame = payloads.to_frame(self.model, instances)
            output = self._predict(frame, inference_id)
            predictions = payloads.to_predictions(self.model, output, rows)
            answer = payloads.encode(predictions)
            payloads.check_response(self.model, predictions)
        except RequestError as exc:
            level = logging.ERROR if exc.status.startswith("5") else logging.WARNING
            log.log(level, "POST /invocations %s %s %.1f ms inference_id=%s: %s", exc.status[:3], _rows(rows),
                    (time.perf_counter() - started) * 1000, inference_id, exc.summary())
            return _respond(start_response, exc.status, exc.body())
        except Exception as exc:  # a fault of the runtime itself: still an answer in JSON, logged with the id
            log.exception("POST /invocations 500 %s inference_id=%s: modelbot-serve failed on this request",
                          _rows(rows), inference_id)
            error = server_error(f"modelbot-serve failed on this request: {type(exc).__name__}: "
                                 f"{shorten(str(exc), 200)}")
            return _respond(start_response, error.status, error.body())
        self.access_log.answered(_rows(rows), (time.perf_counter() - started) * 1000, inference_id)
        return _respond(start_response, "200 OK", answer)

    def _read_body(self, environ) -> bytes:
        limit = self.max_request_bytes
        length = environ.get("CONTENT_LENGTH") or ""
        stream = environ["wsgi.input"]
        if length.strip():
            try:
                size = int(length)
            except ValueError:
                size = -1
            if size < 0:
                raise RequestError("400 Bad Request", f"Content-Length {shorten(length, 40)} is not a byte count")
            if size > limit:
                raise _too_large(size, limit)
            return stream.read(size)
        body = stream.read(limit + 1)  # chunked: read no more than the limit allows
        if len(body) > limit:
            raise _too_large(None, limit)
        return body

    def _predict(self, frame, inference_id: str):
        with self._predict_lock:
            self.predicting = (time.monotonic(), inference_id)
            try:
                return self.model.predict(self.model.model, frame)
            except Exception as exc:
                log.error("%s.predict raised on inference_id=%s:\n%s", self.model.module_name, inference_id,
                          "".join(traceback.format_exception(exc)).rstrip())
                message = str(exc).splitlines()[0] if str(exc) else ""
                raise server_error(f"{self.model.module_name}.predict raised {type(exc).__name__}"
                                   f"{': ' + shorten(message, 200) if message else ''}") from None
            finally:
                self.predicting = None


def _too_large(size: int | None, limit: int) -> RequestError:
    sent = f" ({size} bytes)" if size is not None else ""
    return RequestError("413 Content Too Large",
                        f"the request body{sent} is over this server's limit of {limit} bytes "
                        "(MODELBOT_SERVE_MAX_REQUEST_BYTES): send fewer instances per request")


def _rows(n: int) -> str:
    return "-" if n == 0 else f"{n} row" if n == 1 else f"{n} rows"


def _error_body(error: str) -> bytes:
    return json.dumps({"error": error}).encode()


def _respond(start_response, status: str, body: bytes, extra: list | None = None):
    start_response(status, [*JSON_HEADERS, ("Content-Length", str(len(body))), *(extra or [])])
    return [body]
