"""A local PagerDuty Events API v2: a real HTTP server that validates events like PagerDuty and records them."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")


@dataclass
class Received:
    path: str
    content_type: str
    body: Any  # parsed JSON, or the raw text when it was not JSON
    status: int  # what the fake answered


class FakePagerDuty:
    def __init__(self):
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._faults: list[list] = []  # [status, remaining, retry_after]
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> "FakePagerDuty":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, answer = fake._answer(self.path, self.headers.get("Content-Type", ""), raw)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v2/enqueue"

    def fail_next(self, status: int, count: int = 1, retry_after: int | None = None) -> None:
        with self._lock:
            self._faults.append([status, count, retry_after])

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    @property
    def events(self) -> list[dict]:
        """Events PagerDuty accepted (answered 202), in order."""
        return [r.body for r in self.received if r.status == 202]

    def _answer(self, path: str, content_type: str, raw: bytes):
        with self._lock:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            record = Received(path, content_type, body, 0)
            self._received.append(record)
            if self._faults:
                fault = self._faults[0]
                fault[1] -= 1
                if fault[1] <= 0:
                    self._faults.pop(0)
                record.status = fault[0]
                headers = {"Retry-After": str(fault[2])} if fault[2] is not None else {}
                message = "Too many requests" if fault[0] == 429 else "Internal Server Error"
                return fault[0], headers, {"status": "error", "message": message}
            errors = self._validate(path, content_type, body)
            if errors:
                record.status = 400
                return 400, {}, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
            record.status = 202
            return 202, {}, {"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]}

    @staticmethod
    def _validate(path: str, content_type: str, body: Any) -> list[str]:
        if path != "/v2/enqueue":
            return [f"unknown path {path}"]
        if not content_type.startswith("application/json") or not isinstance(body, dict):
            return ["body must be a JSON object"]
        errors = []
        if not isinstance(body.get("routing_key"), str) or len(body["routing_key"]) != 32:
            errors.append("'routing_key' must be a 32 character string")
        action = body.get("event_action")
        if action not in ACTIONS:
            errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
        if not body.get("dedup_key"):
            errors.append("'dedup_key' is missing")  # modelbot always sends one: it is the incident's identity
        if action == "trigger":
            payload = body.get("payload") or {}
            for key in ("summary", "source", "severity"):
                if not payload.get(key):
                    errors.append(f"'payload.{key}' is missing or blank")
            if payload.get("severity") and payload["severity"] not in SEVERITIES:
                errors.append("'payload.severity' is invalid")
            if len(payload.get("summary") or "") > 1024:
                errors.append("'payload.summary' is too long")
            for link in body.get("links") or []:
                if not link.get("href"):
                    errors.append("'links.href' is missing")
        return errors
