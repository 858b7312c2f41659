"""The sandbox's Slack-like page: serves sandbox/page/ and a small JSON API over the Slack emulator.

What the person does on the page reaches modelbot exactly as Slack would send it: slash commands as signed
form posts to /slack/events with a `response_url`, button clicks as signed `block_actions` payloads, and
@modelbot mentions as signed `app_mention` events. What modelbot answers is read back from the emulator
(chat.postMessage/update, file uploads, postEphemeral) and from the response_urls it POSTed to, and shown
the way Slack shows it: a slash command's reply is an ephemeral message "Only visible to you", which a later
`replace_original` replaces; a button click's `replace_original` replaces the message the button was on.

The page drives modelbot as the person at it, so only that page may: every request must name this server as
127.0.0.1 or localhost on its port (Host), and a request sent by a page must come from the sandbox's own page
(Origin). Anything else, a web page on another site or a DNS-rebinding name pointing at 127.0.0.1, gets a 403
saying why.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sandbox.pagerduty import FakePagerDuty
from sandbox.slack_emulator import SlackEmulator

log = logging.getLogger(__name__)

PAGE_DIR = Path(__file__).resolve().parent / "page"
BOT_TIMEOUT_SECONDS = 10
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
LOCAL_NAMES = ("127.0.0.1", "localhost")


@dataclass
class Ephemeral:
    """A message only the person at the page sees: a command's reply, a response_url answer, postEphemeral."""

    id: str
    channel: str
    ts: str
    text: str = ""
    blocks: list | None = None
    thread_ts: str | None = None
    edited: bool = False
    deleted: bool = False


@dataclass
class ResponseTarget:
    """What a response_url issued by the page answers to."""

    channel: str
    ephemeral_id: str | None = None  # the ephemeral it replaces (a command's reply, an ephemeral's button)
    message_ts: str | None = None  # the channel message whose button was clicked


@dataclass
class Overlay:
    """A channel message replaced through a response_url (replace_original, delete_original)."""

    text: str
    blocks: list | None
    at: float
    deleted: bool = False


@dataclass
class World:
    """What the page server needs to know about the sandbox."""

    emulator: SlackEmulator
    bot_url: str  # modelbot's /slack/events
    signing_secret: str
    me: str
    channels: dict[str, str]  # channel ID -> name without '#'
    pagerduty: FakePagerDuty | None = None
    traffic_url: str | None = None
    airflow_url: str | None = None
    team_id: str = "T0EMULATOR"
    extra: dict[str, Any] = field(default_factory=dict)


class PageState:
    def __init__(self, world: World):
        self.world = world
        self.lock = threading.RLock()
        self.ephemerals: dict[str, Ephemeral] = {}
        self.targets: dict[str, ResponseTarget] = {}
        self.overlays: dict[tuple[str, str], Overlay] = {}
        self.in_channel: list[dict] = []  # response_type=in_channel answers, shown as the bot's messages
        self.seen_responses = 0
        self.seen_posted_ephemerals = 0
        self.history: list[str] = []
        self._ids = itertools.count(1)

    # ---- talking to modelbot the way Slack does ----
    def _sign(self, body: bytes) -> dict[str, str]:
        ts = str(int(time.time()))
        digest = hmac.new(self.world.signing_secret.encode(), b"v0:" + ts.encode() + b":" + body,
                          hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}

    def _post(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        request = urllib.request.Request(self.world.bot_url, data=body, method="POST",
                                         headers={"Content-Type": content_type, **self._sign(body)})
        try:
            with urllib.request.urlopen(request, timeout=BOT_TIMEOUT_SECONDS) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            return 0, f"modelbot did not answer at {self.world.bot_url} ({exc})".encode()

    def _new_ephemeral(self, channel: str, text: str, blocks: list | None = None,
                       thread_ts: str | None = None) -> Ephemeral:
        e = Ephemeral(id=f"e{next(self._ids)}", channel=channel, ts=f"{time.time():.6f}", text=text,
                      blocks=blocks or None, thread_ts=thread_ts)
        self.ephemerals[e.id] = e
        return e

    def _response_url(self, target: ResponseTarget) -> str:
        rid = f"page{next(self._ids)}x{int(time.time() * 1000)}"
        self.targets[rid] = target
        return self.world.emulator.response_url(rid)

    def command(self, channel: str, text: str) -> dict:
        """`/model <text>` typed in `channel`: a signed slash command, its ack body shown as an ephemeral."""
        text = text.strip()
        if text.startswith("/model"):
            text = text[len("/model"):].strip()
        target = ResponseTarget(channel)
        with self.lock:
            url = self._response_url(target)
            self.history.append(f"/model {text}".strip())
        form = {
            "token": "sandbox-verification-token", "team_id": self.world.team_id, "team_domain": "sandbox",
            "channel_id": channel, "channel_name": self.world.channels.get(channel, "directmessage"),
            "user_id": self.world.me, "user_name": "you", "command": "/model", "text": text,
            "api_app_id": self.world.emulator.app_id, "is_enterprise_install": "false",
            "response_url": url, "trigger_id": f"{time.time_ns()}.sandbox",
        }
        status, raw = self._post(urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded")
        with self.lock:
            if status != 200:
                detail = raw.decode(errors="replace")[:300]
                e = self._new_ephemeral(channel, f":warning: /model failed with the error \"{status}\": {detail}")
                target.ephemeral_id = e.id
                return {"ok": False, "status": status}
            body = _json_or_text(raw)
            if body:
                e = self._new_ephemeral(channel, body.get("text", ""), body.get("blocks"))
                target.ephemeral_id = e.id
        return {"ok": True}

    def message(self, channel: str, text: str, thread_ts: str | None) -> dict:
        """A plain message from the person; one that mentions @modelbot is also sent as an app_mention."""
        bot = self.world.emulator.bot_user_id
        slack_text = text.replace("@modelbot", f"<@{bot}>")
        ts = self.world.emulator.add_message(channel, slack_text, user=self.world.me, thread_ts=thread_ts)
        if f"<@{bot}>" in slack_text:
            event = {"type": "app_mention", "user": self.world.me, "text": slack_text, "ts": ts,
                     "channel": channel, "event_ts": ts}
            if thread_ts:
                event["thread_ts"] = thread_ts
            envelope = {"token": "sandbox-verification-token", "team_id": self.world.team_id,
                        "api_app_id": self.world.emulator.app_id, "event": event, "type": "event_callback",
                        "event_id": f"Ev{time.time_ns()}", "event_time": int(time.time()),
                        "authorizations": [{"team_id": self.world.team_id, "user_id": bot, "is_bot": True}]}
            self._post(json.dumps(envelope).encode(), "application/json")
        return {"ok": True, "ts": ts}

    def action(self, channel: str, action_id: str, *, message_ts: str | None = None,
               ephemeral_id: str | None = None) -> dict:
        """A Block Kit button click, as Slack posts it: block_actions with the button as it was rendered."""
        with self.lock:
            if ephemeral_id:
                e = self.ephemerals.get(ephemeral_id)
                if e is None:
                    return {"ok": False, "error": "message_not_found"}
                blocks, container = e.blocks or [], {"type": "message", "message_ts": e.ts, "channel_id": channel,
                                                     "is_ephemeral": True}
                message = None
                target = ResponseTarget(channel, ephemeral_id=ephemeral_id)
            else:
                message = self._channel_message(channel, message_ts)
                if message is None:
                    return {"ok": False, "error": "message_not_found"}
                blocks = message.get("blocks") or []
                container = {"type": "message", "message_ts": message_ts, "channel_id": channel,
                             "is_ephemeral": False}
                target = ResponseTarget(channel, message_ts=message_ts)
            found = [(b.get("block_id", ""), el) for b in blocks if b.get("type") == "actions"
                     for el in b.get("elements", []) if el.get("action_id") == action_id]
            found += [(b.get("block_id", ""), b["accessory"]) for b in blocks
                      if (b.get("accessory") or {}).get("action_id") == action_id]
            if not found:
                return {"ok": False, "error": "action_not_found"}
            block_id, element = found[0]
            url = self._response_url(target)
        payload = {
            "type": "block_actions",
            "user": {"id": self.world.me, "username": "you", "name": "you", "team_id": self.world.team_id},
            "api_app_id": self.world.emulator.app_id, "token": "sandbox-verification-token",
            "container": container, "trigger_id": f"{time.time_ns()}.sandbox",
            "team": {"id": self.world.team_id, "domain": "sandbox"}, "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": self.world.channels.get(channel, "directmessage")},
            "state": {"values": {}}, "response_url": url,
            "actions": [{**element, "block_id": block_id, "action_ts": f"{time.time():.6f}"}],
        }
        if message is not None:
            payload["message"] = message
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        status, raw = self._post(body, "application/x-www-form-urlencoded")
        if status != 200:
            with self.lock:
                self._new_ephemeral(channel, f":warning: the click was refused: {status} {raw[:200].decode(errors='replace')}")
        return {"ok": status == 200}

    def _channel_message(self, channel: str, ts: str | None) -> dict | None:
        for m in self.world.emulator.messages(channel):
            if m["ts"] == ts:
                m.pop("edits", None)
                return m
        return None

    # ---- reading back what modelbot answered ----
    def absorb(self) -> None:
        """Applies response_url posts and chat.postEphemeral calls not seen yet."""
        emulator = self.world.emulator
        with self.lock:
            responses = emulator.responses
            for record in responses[self.seen_responses:]:
                self._apply_response(record.id, record.body, record.time)
            self.seen_responses = len(responses)
            posted = emulator.ephemerals
            for p in posted[self.seen_posted_ephemerals:]:
                if p.get("user") == self.world.me:
                    self._new_ephemeral(p["channel"], p.get("text") or "", p.get("blocks"), p.get("thread_ts"))
            self.seen_posted_ephemerals = len(posted)

    def _apply_response(self, rid: str, body: dict, at: float) -> None:
        target = self.targets.get(rid)
        if target is None:
            return
        text, blocks = body.get("text", ""), body.get("blocks")
        replace = _truthy(body.get("replace_original"))
        if _truthy(body.get("delete_original")):
            if target.ephemeral_id and target.ephemeral_id in self.ephemerals:
                self.ephemerals[target.ephemeral_id].deleted = True
            elif target.message_ts:
                self.overlays[(target.channel, target.message_ts)] = Overlay("", None, at, deleted=True)
            return
        if replace and target.ephemeral_id in self.ephemerals:
            e = self.ephemerals[target.ephemeral_id]
            e.text, e.blocks, e.edited = text, blocks or None, True
            return
        if replace and target.message_ts:
            self.overlays[(target.channel, target.message_ts)] = Overlay(text, blocks, at)
            return
        if body.get("response_type") == "in_channel":
            self.in_channel.append({"type": "message", "ts": f"{at:.6f}", "text": text, "blocks": blocks,
                                    "user": self.world.emulator.bot_user_id, "bot_id": self.world.emulator.bot_id,
                                    "channel": target.channel})
            return
        e = self._new_ephemeral(target.channel, text, blocks)
        if target.ephemeral_id is None or target.message_ts is None:
            target.ephemeral_id = e.id

    # ---- what the page shows ----
    def channel_list(self) -> list[dict]:
        emulator = self.world.emulator
        out = []
        for cid, name in self.world.channels.items():
            out.append({"id": cid, "name": f"#{name}", "kind": "channel", "latest": self._latest(cid)})
        for cid in emulator.channels() if hasattr(emulator, "channels") else []:
            if cid.startswith("D") and cid not in self.world.channels:
                out.append({"id": cid, "name": self._dm_name(cid), "kind": "dm", "latest": self._latest(cid)})
        return out

    def _dm_name(self, cid: str) -> str:
        user = cid[1:]
        # The bot's DM with the person at the page is, for that person, the conversation with modelbot.
        return "modelbot" if user == self.world.me else self._user_name(user)

    def _user_name(self, user: str | None) -> str:
        if user == self.world.me:
            return "You"
        if user == self.world.emulator.bot_user_id:
            return "modelbot"
        return user or "someone"

    def _latest(self, cid: str) -> str:
        tops = [m["ts"] for m in self.world.emulator.messages(cid) if m.get("thread_ts") in (None, m["ts"])]
        tops += [e.ts for e in self.ephemerals.values() if e.channel == cid and not e.deleted]
        return max(tops, default="0")

    def _render(self, m: dict, channel: str) -> dict:
        overlay = self.overlays.get((channel, m["ts"]))
        edited_ts = float((m.get("edited") or {}).get("ts") or 0)
        text, blocks, edited = m.get("text", ""), m.get("blocks"), bool(m.get("edited"))
        if overlay and overlay.at >= edited_ts:
            if overlay.deleted:
                return {}
            text, blocks, edited = overlay.text, overlay.blocks, True
        files = [{"id": f.get("id"), "title": f.get("title"), "alt": f.get("alt_txt") or f.get("title") or "",
                  "mimetype": f.get("mimetype", ""), "url": f"/files/{f.get('id')}"} for f in m.get("files") or []]
        return {
            "ts": m["ts"], "user": m.get("user"), "name": self._user_name(m.get("user")),
            "bot": bool(m.get("bot_id")), "text": text, "blocks": blocks, "files": files, "edited": edited,
            "thread_ts": m.get("thread_ts"), "reply_count": m.get("reply_count", 0),
            "reply_users": [self._user_name(u) for u in m.get("reply_users", [])],
            "latest_reply": m.get("latest_reply"), "broadcast": m.get("subtype") == "thread_broadcast",
        }

    def _render_ephemeral(self, e: Ephemeral) -> dict:
        return {"ts": e.ts, "user": self.world.emulator.bot_user_id, "name": "modelbot", "bot": True,
                "text": e.text, "blocks": e.blocks, "files": [], "edited": False, "ephemeral": e.id,
                "thread_ts": e.thread_ts, "reply_count": 0}

    def view(self, channel: str | None, thread_ts: str | None) -> dict:
        self.absorb()
        with self.lock:
            result: dict[str, Any] = {"me": self.world.me, "channels": self.channel_list(), "history": self.history[-50:],
                                      "airflow_url": self.world.airflow_url}
            if channel:
                messages = self.world.emulator.messages(channel)
                tops = [self._render(m, channel) for m in messages
                        if m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast"]
                tops += [self._render_ephemeral(e) for e in self.ephemerals.values()
                         if e.channel == channel and not e.deleted and not e.thread_ts]
                tops += [dict(self._render(m, channel)) for m in self.in_channel if m["channel"] == channel]
                result["messages"] = sorted((m for m in tops if m), key=lambda m: float(m["ts"]))
                if thread_ts:
                    thread = [self._render(m, channel) for m in messages
                              if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts]
                    thread += [self._render_ephemeral(e) for e in self.ephemerals.values()
                               if e.channel == channel and e.thread_ts == thread_ts and not e.deleted]
                    result["thread"] = sorted((m for m in thread if m), key=lambda m: float(m["ts"]))
            return result

    def pagerduty_events(self) -> list[dict]:
        if self.world.pagerduty is None:
            return []
        out = []
        for event in self.world.pagerduty.events[-30:]:
            payload = event.get("payload") or {}
            out.append({"action": event.get("event_action"), "dedup_key": event.get("dedup_key"),
                        "summary": payload.get("summary", ""), "severity": payload.get("severity", ""),
                        "source": payload.get("source", "")})
        return out

    def file(self, file_id: str) -> tuple[bytes, str] | None:
        for f in self.world.emulator.files:
            if f.id == file_id and f.data is not None:
                import mimetypes

                return f.data, mimetypes.guess_type(f.filename)[0] or "application/octet-stream"
        return None


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes")


def _json_or_text(raw: bytes) -> dict:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
        return body if isinstance(body, dict) else {"text": str(body)}
    except ValueError:
        return {"text": raw.decode(errors="replace")}


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
            else:
                self._send(404, {"error": "not found"})
        except (KeyError, ValueError) as exc:
            self._send(400, {"error": f"bad request: {exc}"})
        except BrokenPipeError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def _proxy(base: str | None, path: str, body: dict | None = None) -> tuple[int, dict]:
    if not base:
        return 503, {"error": "the traffic simulation is not running"}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json_or_text(exc.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return 502, {"error": f"the traffic simulation did not answer ({exc})"}


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
