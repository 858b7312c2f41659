"""A scripted Airflow REST endpoint on a real socket, for faults a real Airflow will not produce on demand."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit



@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None
    body: dict | None


@dataclass
class FakeAirflow:
    """routes: (METHOD, path or "prefix*") -> fn(Seen) -> (status, json body) | (status, body, delay seconds)."""

    routes: dict[tuple[str, str], Callable[[Seen], tuple]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0  # 0: any free port; a fixed one to come back on the same URL after stop()

    def start(self) -> "FakeAirflow":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = urlsplit(self.path).path
                seen = Seen(self.command, path, self.headers.get("Authorization"), json.loads(raw) if raw else None)
                fake.seen.append(seen)
                route = fake.route(self.command, path)
                status, body, *delay = route(seen) if route else (404, {"detail": "Not Found"})
                if delay:
                    time.sleep(delay[0])
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting, as it should

            do_GET = do_POST = do_PATCH = _serve

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def route(self, method: str, path: str):
        """The exact route, else one whose path ends with "*" and prefixes this one (a run id in the path)."""
        if (method, path) in self.routes:
            return self.routes[(method, path)]
        for (m, p), fn in self.routes.items():
            if m == method and p.endswith("*") and path.startswith(p[:-1]):
                return fn
        return None

    def calls(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]


def run_json(dag_id: str, run_id: str, state: str = "queued", **extra) -> dict:
    """A DAGRunResponse as Airflow 3.3 sends it (the fields the client requires, and a few more)."""
    return {
        "dag_display_name": dag_id, "dag_id": dag_id, "dag_run_id": run_id, "dag_versions": [],
        "run_after": "2026-11-27T05:00:00Z", "queued_at": "2026-11-27T05:00:00Z", "run_type": "manual",
        "state": state, "conf": {}, "triggered_by": "rest_api", "triggering_user_name": "modelbot", **extra,
    }


EMPTY_RUNS = {"dag_runs": [], "total_entries": 0}


def task_json(dag_id: str, run_id: str, task_id: str, state: str | None, try_number: int = 1, max_tries: int = 1) -> dict:
    """A TaskInstanceResponse as Airflow 3.3 sends it (the fields the client requires)."""
    return {
        "dag_display_name": dag_id, "dag_id": dag_id, "dag_run_id": run_id, "executor_config": "{}",
        "id": "01a21b7e-2f02-7955-9193-c1c2928aefc1", "map_index": -1, "max_tries": max_tries, "pool": "default_pool",
        "pool_slots": 1, "run_after": "2026-11-27T05:00:00Z", "task_display_name": task_id, "task_id": task_id,
        "try_number": try_number, "state": state, "duration": 1.5 if state in ("success", "failed") else None,
    }


def xcom_json(dag_id: str, run_id: str, task_id: str, value) -> dict:
    return {
        "dag_display_name": dag_id, "dag_id": dag_id, "key": "return_value", "map_index": -1,
        "run_after": "2026-11-27T05:00:00Z", "run_id": run_id, "task_display_name": task_id, "task_id": task_id,
        "timestamp": "2026-11-27T05:01:00Z", "value": value,
    }
