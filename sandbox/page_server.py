"""The sandbox's Slack-like page: serves sandbox/page/ and a small JSON API over the page's state
(sandbox/page_state.py: the Slack emulator, modelbot behind it) and the sandbox's panels (traffic, hosting,
churn's world, the Try-a-request box).

The page drives modelbot as the person at it, so only that page may: every request must name this server as
127.0.0.1 or localhost on its port (Host), and a request sent by a page must come from the sandbox's own page
(Origin). Anything else, a web page on another site or a DNS-rebinding name pointing at 127.0.0.1, gets a 403
saying why.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sandbox.page_state import PageState, World, json_or_text

__all__ = ["PageServer", "World", "foreign_request"]

log = logging.getLogger(__name__)

PAGE_DIR = Path(__file__).resolve().parent / "page"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
LOCAL_NAMES = ("127.0.0.1", "localhost")


def foreign_request(host: str | None, origin: str | None, port: int) -> str | None:
    """Why a request may not drive the sandbox (None: it comes from the sandbox's own page or this machine)."""
    own = [f"{name}:{port}" for name in LOCAL_NAMES] + (list(LOCAL_NAMES) if port == 80 else [])
    where = f"http://127.0.0.1:{port}/ or http://localhost:{port}/"
    named = (host or "").strip().lower()
    if named not in own:
        return (f"The modelbot sandbox answers only at {where}, not at Host {named or '(none)'!r}: a web page on "
                "another site, or a DNS-rebinding name pointing at this machine, must not drive it.")
    if origin is not None and origin.strip().lower() not in {f"http://{h}" for h in own}:
        return (f"The modelbot sandbox takes requests only from its own page ({where}), not from a page of "
                f"{origin.strip()!r}.")
    return None


class _Handler(BaseHTTPRequestHandler):
    state: PageState
    server_version = "ModelbotSandbox/1.0"

    def _refused(self) -> bool:
        """Sends 403 with the reason when the request is not from the sandbox's own page or this machine."""
        why = foreign_request(self.headers.get("Host"), self.headers.get("Origin"), self.server.server_address[1])
        if why is None:
            return False
        if self.path.startswith("/api/"):
            self._send(403, {"error": why})
        else:
            self._send(403, (why + "\n").encode(), "text/plain; charset=utf-8")
        return True

    def _send(self, status: int, body: Any, content_type: str = "application/json", cache: bool = False) -> None:
        data = json.dumps(body).encode() if content_type == "application/json" else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "max-age=300" if cache else "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return json.loads(raw or b"{}")

    def do_GET(self) -> None:
        if self._refused():
            return
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        path = parts.path
        try:
            if path in ("/", "/index.html"):
                self._send(200, (PAGE_DIR / "index.html").read_bytes(), STATIC_TYPES[".html"])
            elif path.startswith("/static/"):
                name = path[len("/static/"):]
                file = (PAGE_DIR / name).resolve()
                if PAGE_DIR not in file.parents or not file.is_file():
                    self._send(404, {"error": "not found"})
                    return
                self._send(200, file.read_bytes(), STATIC_TYPES.get(file.suffix, "application/octet-stream"))
            elif path == "/api/state":
                self._send(200, self.state.view(query.get("channel"), query.get("thread") or None))
            elif path == "/api/pagerduty":
                self._send(200, {"events": self.state.pagerduty_events()})
            elif path == "/api/traffic":
                self._send(*_proxy(self.state.world.traffic_url, "/state"))
            elif path == "/api/hosting":
                self._send(*_proxy(self.state.world.runtime_url, "/state", what="the SageMaker hosting"))
            elif path.startswith("/files/"):
                found = self.state.file(path[len("/files/"):])
                if found is None:
                    self._send(404, {"error": "file not found"})
                else:
                    self._send(200, found[0], found[1], cache=True)
            elif path == "/healthz":
                self._send(200, {"ok": True})
            else:
                self._send(404, {"error": "not found"})
        except BrokenPipeError:
            pass

    def do_POST(self) -> None:
        if self._refused():
            return
        path = urllib.parse.urlsplit(self.path).path
        try:
            body = self._body()
            if path == "/api/command":
                self._send(200, self.state.command(body["channel"], body["text"]))
            elif path == "/api/message":
                self._send(200, self.state.message(body["channel"], body["text"], body.get("thread_ts")))
            elif path == "/api/action":
                self._send(200, self.state.action(body["channel"], body["action_id"],
                                                  message_ts=body.get("message_ts"),
                                                  ephemeral_id=body.get("ephemeral")))
            elif path == "/api/dismiss":
                with self.state.lock:
                    e = self.state.ephemerals.get(body.get("ephemeral", ""))
                    if e:
                        e.deleted = True
                self._send(200, {"ok": True})
            elif path == "/api/traffic/rates":
                self._send(*_proxy(self.state.world.traffic_url, "/rates", body))
            elif path == "/api/world":
                self._send(*_proxy(self.state.world.traffic_url, "/world", body))
            elif path == "/api/try":
                self._send(*self.state.try_request.send(str(body["endpoint"]), body.get("body"),
                                                        body.get("variant") or None))
            else:
                self._send(404, {"error": "not found"})
        except (KeyError, ValueError) as exc:
            self._send(400, {"error": f"bad request: {exc}"})
        except BrokenPipeError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def _proxy(base: str | None, path: str, body: dict | None = None,
           what: str = "the traffic simulation") -> tuple[int, dict]:
    if not base:
        return 503, {"error": f"{what} is not running"}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json_or_text(exc.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return 502, {"error": f"{what} did not answer ({exc})"}


class PageServer:
    def __init__(self, world: World, port: int, host: str = "127.0.0.1"):
        self.state = PageState(world)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="sandbox-page", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "PageServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
