"""A local Slack Web API: a real HTTP server that answers like Slack and remembers what it was asked.

Tests point slack_sdk's WebClient at `api_url` and then ask the emulator what a user would have seen
(messages, threads, files, response_url replies). The sandbox runs it with `python -m bot.slack_emulator`.
Stdlib only, so it starts anywhere the app does.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import mimetypes
import random
import signal
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger(__name__)

PERMALINK_BASE = "https://emulator.slack"
# Slack takes these as JSON text in a form body and as structures in a JSON body; both are stored parsed.
_JSON_FIELDS = ("blocks", "attachments", "view", "files", "metadata")


class _Refusal(Exception):
    """Raised by a method to answer {"ok": false, "error": ...} the way Slack does (HTTP 200)."""


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    time: float
    token: str | None = None
    status: int = 200
    error: str | None = None  # what the emulator answered; None when it answered ok


@dataclass
class UploadedFile:
    id: str
    filename: str
    length: int
    alt_txt: str | None = None
    snippet_type: str | None = None
    title: str | None = None
    data: bytes | None = None
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None
    completed: bool = False


@dataclass
class ResponseRecord:
    id: str
    body: dict[str, Any]
    time: float


@dataclass
class _Fault:
    status: int
    error: str
    retry_after: int | None
    remaining: int


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes")


def _parse_args(query: str, raw: bytes, content_type: str) -> dict[str, Any]:
    args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json" and raw:
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("JSON body is not an object")
        args.update(body)
    elif raw:
        args.update(parse_qsl(raw.decode(), keep_blank_values=True))
    for key in _JSON_FIELDS:
        if isinstance(args.get(key), str) and args[key]:
            try:
                args[key] = json.loads(args[key])
            except ValueError:
                raise _Refusal("invalid_blocks_format" if key == "blocks" else "invalid_arguments") from None
    return args


def _check_limits(args: dict[str, Any]) -> None:
    """Slack's size limits, as Slack refuses them: text over 40,000 characters, a section over 3,000."""
    if len(str(args.get("text") or "")) > 40000:
        raise _Refusal("msg_too_long")
    for block in args.get("blocks") or []:
        if isinstance(block, dict) and block.get("type") == "section" and \
                len(str((block.get("text") or {}).get("text") or "")) > 3000:
            raise _Refusal("invalid_blocks")


class SlackEmulator:
    """Answers the Slack Web API on 127.0.0.1; every public accessor returns copies, safe across threads."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, team_id: str = "T0EMULATOR",
                 team: str = "Emulated Workspace", bot_user_id: str = "U0MODELBOT", bot_id: str = "B0MODELBOT",
                 bot_name: str = "modelbot", app_id: str = "A0MODELBOT"):
        self.host, self.port = host, port
        self.team_id, self.team, self.app_id = team_id, team, app_id
        self.bot_user_id, self.bot_id, self.bot_name = bot_user_id, bot_id, bot_name
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # Configuration survives reset(); recorded traffic does not.
        self._users: dict[str, dict[str, Any]] = {}
        self._usergroups: dict[str, list[str]] = {}
        self._response_ids: set[str] = set()
        self.socket_mode_url: str | None = None  # a ws:// Socket Mode peer, answered by apps.connections.open
        self._last_ts_us = 0
        self._serial = 0
        self.reset()

    # ---- lifecycle ----
    def start(self) -> "SlackEmulator":
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = _Server((self.host, self.port), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"slack-emulator-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    __enter__ = start

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    # ---- configuration and fault injection ----
    def reset(self) -> None:
        with self._lock:
            self._calls: list[Call] = []
            self._messages: dict[str, list[dict[str, Any]]] = {}
            self._ephemerals: list[dict[str, Any]] = []
            self._views: list[dict[str, Any]] = []
            self._files: dict[str, UploadedFile] = {}
            self._responses: list[ResponseRecord] = []
            self._faults: dict[str, list[_Fault]] = {}
            self._random_faults: tuple | None = None  # (rate, statuses, retry_after, Random): fail_randomly()
            self._refused_channels: dict[str, str] = {}

    def add_user(self, user_id: str, *, name: str | None = None, real_name: str | None = None,
                 tz: str = "UTC", tz_offset: int = 0, is_bot: bool = False) -> None:
        """users.info answers this user; any other U... or W... ID gets a made-up person in UTC."""
        real_name = real_name or f"User {user_id}"
        with self._lock:
            self._users[user_id] = {
                "id": user_id, "team_id": self.team_id, "name": name or user_id.lower(), "real_name": real_name,
                "tz": tz, "tz_label": tz, "tz_offset": tz_offset, "is_bot": is_bot, "deleted": False,
                "profile": {"real_name": real_name, "display_name": name or ""},
            }

    def set_usergroup(self, usergroup_id: str, members: list[str]) -> None:
        with self._lock:
            self._usergroups[usergroup_id] = list(members)

    def fail_next(self, method: str, status: int = 429, retry_after: int = 1, count: int = 1) -> None:
        """The next `count` calls of `method` ("*" for any) get HTTP `status`: 429 rate limit or a 5xx."""
        error = "ratelimited" if status == 429 else "internal_error"
        self._add_fault(method, _Fault(status, error, retry_after if status == 429 else None, count))

    def error_next(self, method: str, error: str, count: int = 1) -> None:
        """The next `count` calls of `method` ("*" for any) answer HTTP 200 {"ok": false, "error": error}."""
        self._add_fault(method, _Fault(200, error, None, count))

    def fail_randomly(self, rate: float, statuses: tuple[int, ...] = (429, 503), retry_after: int = 1,
                      seed: int | None = None) -> None:
        """From now on each Web API call fails with probability `rate` (0 turns it off), answering one of
        `statuses` at random (429 with Retry-After); scripted faults still come first. Until reset()."""
        with self._lock:
            self._random_faults = (rate, tuple(statuses), retry_after, random.Random(seed)) if rate > 0 else None

    def refuse_channel(self, channel: str, error: str = "is_archived") -> None:
        """Every post to `channel` answers {"ok": false, "error": error} (archived, bot removed, ...) until reset()."""
        with self._lock:
            self._refused_channels[channel] = error

    def _add_fault(self, method: str, fault: _Fault) -> None:
        with self._lock:
            self._faults.setdefault(method, []).append(fault)

    # ---- what tests ask ----
    def _snapshot(self, value: Any) -> Any:
        with self._lock:
            return copy.deepcopy(value)

    calls = property(lambda self: self._snapshot(self._calls), doc="Every Web API call, in arrival order.")
    ephemerals = property(lambda self: self._snapshot(self._ephemerals))
    views = property(lambda self: self._snapshot(self._views), doc="views.open calls: trigger_id and view.")
    files = property(lambda self: self._snapshot(list(self._files.values())))
    responses = property(lambda self: self._snapshot(self._responses), doc="POSTs to response URLs.")

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Every message in the channel, parents and replies, in posting order; each keeps its `edits`."""
        return self._snapshot(self._messages.get(channel, []))

    def channels(self) -> list[str]:
        """Every channel (and DM) that has a message, in the order each got its first one."""
        with self._lock:
            return list(self._messages)

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The parent message then its replies, in order (empty when nothing has that ts)."""
        return [m for m in self.messages(channel) if m["ts"] == ts or m.get("thread_ts") == ts]

    def response_url(self, name: str | None = None) -> str:
        """A response_url that records what is POSTed to it, for slash command and action payloads."""
        response_id = name or uuid.uuid4().hex[:16]
        with self._lock:
            self._response_ids.add(response_id)
        return f"{self.url}/response/{response_id}"

    def responses_for(self, name_or_url: str) -> list[ResponseRecord]:
        response_id = name_or_url.rstrip("/").rsplit("/", 1)[-1]
        return [r for r in self.responses if r.id == response_id]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
        """Polls until predicate() is truthy and returns its value; TimeoutError names the last calls seen."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                recent = [(c.method, c.error) for c in self.calls[-10:]]
                raise TimeoutError(f"Slack emulator: condition not met within {timeout}s; last calls: {recent}")
            time.sleep(interval)

    def add_message(self, channel: str, text: str, *, user: str, thread_ts: str | None = None) -> str:
        """A message written by a person (e.g. a mention in a bot thread); returns its ts."""
        with self._lock:
            return self._store_message(channel, {"text": text, "thread_ts": thread_ts}, user=user)["ts"]

    # ---- HTTP entry points (called by the handler) ----
    def _api(self, method: str, query: str, raw: bytes, content_type: str, authorization: str | None):
        with self._lock:
            call = Call(method, {}, time.time())
            self._calls.append(call)
            try:
                call.args = _parse_args(query, raw, content_type)
                call.token = call.args.pop("token", None)
                if authorization and authorization.lower().startswith("bearer "):
                    call.token = authorization[7:].strip()
                handler = getattr(self, "_m_" + method.replace(".", "_"), None)
                if handler is None:
                    raise _Refusal("unknown_method")
                fault = self._take_fault(method)
                if fault is not None:
                    call.status, call.error = fault.status, fault.error
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                    return fault.status, headers, {"ok": False, "error": fault.error}
                if not call.token:
                    raise _Refusal("not_authed")
                # Socket Mode's connection call takes the app-level token; every other method a bot/user token.
                app_level = method == "apps.connections.open"
                if not call.token.startswith(("xapp-",) if app_level else ("xoxb-", "xoxp-")):
                    raise _Refusal("invalid_auth")
                result = {"ok": True, **handler(call.args)}
            except ValueError:
                result = {"ok": False, "error": "invalid_json"}
            except _Refusal as refusal:
                result = {"ok": False, "error": refusal.args[0]}
            except Exception:  # an emulator bug must fail the test loudly, not hang the client
                log.exception("Slack emulator failed answering %s", method)
                call.status, call.error = 500, "internal_error"
                return 500, {}, {"ok": False, "error": "internal_error"}
            call.error = result.get("error")
            log.info("%s %s -> %s", method, {k: v for k, v in call.args.items() if k in ("channel", "ts", "thread_ts")},
                     call.error or "ok")
            return 200, {}, result

    def _take_fault(self, method: str) -> _Fault | None:
        for key in (method, "*"):
            queue = self._faults.get(key)
            if queue:
                fault = queue[0]
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.pop(0)
                return fault
        chance = getattr(self, "_random_faults", None)
        if chance is not None and chance[3].random() < chance[0]:
            status = chance[3].choice(chance[1])
            return _Fault(status, "ratelimited" if status == 429 else "internal_error",
                          chance[2] if status == 429 else None, 1)
        return None

    def _upload(self, file_id: str, raw: bytes):
        with self._lock:
            uploaded = self._files.get(file_id)
            if uploaded is None:
                return 404, {}, "file not found"
            uploaded.data = raw
            return 200, {}, f"OK - {len(raw)}"

    def _respond(self, response_id: str, raw: bytes):
        with self._lock:
            if response_id not in self._response_ids:
                return 404, {}, "expired_url"
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return 400, {}, "invalid_payload"
            if not any(body.get(k) for k in ("text", "blocks", "attachments", "delete_original")):
                return 400, {}, "no_text"
            self._responses.append(ResponseRecord(response_id, body, time.time()))
            return 200, {}, "ok"

    # ---- state helpers (lock held) ----
    def _next_ts(self) -> str:
        us = max(int(time.time() * 1_000_000), self._last_ts_us + 100)
        self._last_ts_us = us
        return f"{us // 1_000_000}.{us % 1_000_000:06d}"

    def _next_id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}0EMU{self._serial:06d}"

    @staticmethod
    def _channel(args: dict[str, Any]) -> str:
        channel = args.get("channel")
        if not channel:
            raise _Refusal("channel_not_found")
        # Posting to a user ID lands in the bot's DM with that user, as conversations.open names it.
        return "D" + channel if channel[0] in "UW" else channel

    def _find(self, channel: str, ts: str | None) -> dict[str, Any]:
        for message in self._messages.get(channel, []):
            if message["ts"] == ts:
                return message
        raise _Refusal("message_not_found")

    def _store_message(self, channel: str, args: dict[str, Any], *, user: str | None = None) -> dict[str, Any]:
        ts = self._next_ts()
        message: dict[str, Any] = {"type": "message", "ts": ts, "text": args.get("text") or "", "team": self.team_id}
        if user is None:
            message.update(user=self.bot_user_id, bot_id=self.bot_id, app_id=self.app_id)
        else:
            message["user"] = user
        for key in ("blocks", "attachments", "metadata", "files"):
            if args.get(key):
                message[key] = args[key]
        thread_ts = args.get("thread_ts")
        if thread_ts:
            message["thread_ts"] = thread_ts
            if _truthy(args.get("reply_broadcast")):
                message.update(subtype="thread_broadcast", reply_broadcast=True)
            for parent in self._messages.get(channel, []):
                if parent["ts"] == thread_ts:
                    parent.update(thread_ts=thread_ts, reply_count=parent.get("reply_count", 0) + 1, latest_reply=ts)
                    parent["reply_users"] = sorted(set(parent.get("reply_users", [])) | {message["user"]})
        message["edits"] = []
        self._messages.setdefault(channel, []).append(message)
        return message

    @staticmethod
    def _public(message: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in message.items() if k != "edits"}

    def _file_json(self, f: UploadedFile) -> dict[str, Any]:
        mimetype = mimetypes.guess_type(f.filename)[0] or "application/octet-stream"
        return {
            "id": f.id, "name": f.filename, "title": f.title or f.filename, "mimetype": mimetype,
            "filetype": f.filename.rsplit(".", 1)[-1] if "." in f.filename else "binary",
            "size": len(f.data or b""), "alt_txt": f.alt_txt, "user": self.bot_user_id,
            "permalink": f"{PERMALINK_BASE}/files/{self.bot_user_id}/{f.id}/{f.filename}",
        }

    # ---- Web API methods: _m_<method with dots as underscores>(args) -> response fields ----
    def _m_auth_test(self, args):
        return {"url": f"{PERMALINK_BASE}/", "team": self.team, "user": self.bot_name, "team_id": self.team_id,
                "user_id": self.bot_user_id, "bot_id": self.bot_id, "is_enterprise_install": False}

    def _m_chat_postMessage(self, args):
        channel = self._channel(args)
        if not any(args.get(k) for k in ("text", "blocks", "attachments")):
            raise _Refusal("no_text")
        if channel in self._refused_channels:
            raise _Refusal(self._refused_channels[channel])
        _check_limits(args)
        message = self._store_message(channel, args)
        return {"channel": channel, "ts": message["ts"], "message": self._public(message)}

    def _m_chat_update(self, args):
        channel = self._channel(args)
        message = self._find(channel, args.get("ts"))
        _check_limits(args)
        message["edits"].append({k: copy.deepcopy(message.get(k)) for k in ("text", "blocks", "attachments")})
        # As in Slack: a field left out keeps its old value; an empty list removes blocks or attachments.
        for key in ("text", "blocks", "attachments", "metadata"):
            if key in args:
                message[key] = args[key]
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {"channel": channel, "ts": message["ts"], "text": message.get("text", ""),
                "message": self._public(message)}

    def _m_chat_postEphemeral(self, args):
        channel = self._channel(args)
        if not args.get("user"):
            raise _Refusal("user_not_in_channel")
        if not any(args.get(k) for k in ("text", "blocks", "attachments")):
            raise _Refusal("no_text")
        ts = self._next_ts()
        self._ephemerals.append({"channel": channel, "user": args["user"], "text": args.get("text") or "",
                                 "blocks": args.get("blocks"), "thread_ts": args.get("thread_ts"), "message_ts": ts})
        return {"message_ts": ts}

    def _m_chat_getPermalink(self, args):
        channel = self._channel(args)
        message = self._find(channel, args.get("message_ts"))
        link = f"{PERMALINK_BASE}/archives/{channel}/p{message['ts'].replace('.', '')}"
        if message.get("thread_ts") not in (None, message["ts"]):
            link += f"?thread_ts={message['thread_ts']}&cid={channel}"
        return {"channel": channel, "permalink": link}

    def _m_conversations_open(self, args):
        if args.get("channel"):
            return {"channel": {"id": args["channel"]}}
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if not users:
            raise _Refusal("users_list_not_supplied")
        if len(users) == 1:
            channel = {"id": "D" + users[0], "is_im": True, "user": users[0]}
        else:
            channel = {"id": f"G{zlib.crc32(','.join(sorted(users)).encode()):08X}", "is_mpim": True}
        return {"channel": channel if _truthy(args.get("return_im")) else {"id": channel["id"]}}

    def _m_conversations_replies(self, args):
        channel = self._channel(args)
        messages = [m for m in self._messages.get(channel, [])
                    if m["ts"] == args.get("ts") or m.get("thread_ts") == args.get("ts")]
        if not messages:
            raise _Refusal("thread_not_found")
        return {"messages": [self._public(m) for m in messages], "has_more": False}

    def _m_conversations_history(self, args):
        # Top-level messages only (replies live in conversations.replies), newest first, as Slack returns them.
        channel = self._channel(args)
        oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or "inf")
        messages = [self._public(m) for m in self._messages.get(channel, [])
                    if m.get("thread_ts") in (None, m["ts"]) and oldest <= float(m["ts"]) <= latest]
        return {"messages": messages[::-1][: int(args.get("limit") or 100)], "has_more": False}

    def _m_users_info(self, args):
        user = args.get("user") or ""
        if user not in self._users:
            if not user or user[0] not in "UW":
                raise _Refusal("user_not_found")
            is_bot = user == self.bot_user_id
            self.add_user(user, name=self.bot_name if is_bot else None, is_bot=is_bot)
        return {"user": copy.deepcopy(self._users[user])}

    def _m_usergroups_users_list(self, args):
        return {"users": list(self._usergroups.get(args.get("usergroup") or "", []))}

    def _m_files_getUploadURLExternal(self, args):
        if not args.get("filename") or not str(args.get("length") or "").isdigit():
            raise _Refusal("invalid_arguments")
        file_id = self._next_id("F")
        self._files[file_id] = UploadedFile(file_id, args["filename"], int(args["length"]),
                                            alt_txt=args.get("alt_txt"), snippet_type=args.get("snippet_type"))
        return {"upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def _m_files_completeUploadExternal(self, args):
        wanted = args.get("files")
        if not isinstance(wanted, list) or not wanted:
            raise _Refusal("invalid_arguments")
        uploads = [self._files.get(item.get("id")) for item in wanted]
        if any(f is None or f.data is None for f in uploads):
            raise _Refusal("file_not_found")
        channel = args.get("channel_id") or (str(args.get("channels") or "").split(",")[0] or None)
        for item, f in zip(wanted, uploads):
            f.title, f.completed = item.get("title") or f.filename, True
            f.channel, f.thread_ts, f.initial_comment = channel, args.get("thread_ts"), args.get("initial_comment")
        files = [self._file_json(f) for f in uploads]
        if channel:
            # Slack shares the files as one message, in the thread when thread_ts is given.
            self._store_message(channel, {"text": args.get("initial_comment") or "", "files": files,
                                          "thread_ts": args.get("thread_ts")})
        return {"files": files}

    def _m_views_open(self, args):
        if not args.get("trigger_id") or not isinstance(args.get("view"), dict):
            raise _Refusal("invalid_arguments")
        view = {**args["view"], "id": self._next_id("V"), "team_id": self.team_id, "state": {"values": {}},
                "hash": uuid.uuid4().hex, "app_id": self.app_id, "bot_id": self.bot_id}
        self._views.append({"trigger_id": args["trigger_id"], "view": view})
        return {"view": copy.deepcopy(view)}

    def _m_apps_connections_open(self, args):
        if not self.socket_mode_url:
            raise _Refusal("socket_mode_not_enabled")  # set emulator.socket_mode_url to a ws:// peer
        return {"url": self.socket_mode_url}

    def _m_reactions_add(self, args):
        message = self._find(self._channel(args), args.get("timestamp"))
        reactions = message.setdefault("reactions", [])
        if any(r["name"] == args.get("name") for r in reactions):
            raise _Refusal("already_reacted")
        reactions.append({"name": args.get("name"), "users": [self.bot_user_id], "count": 1})
        return {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops bursts of parallel connections, costing a 1 s SYN retry each.
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    emulator: SlackEmulator
    server_version = "SlackEmulator/1.0"

    def do_POST(self) -> None:  # Slack answers GET too; slack_sdk only POSTs
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = parts.path
        if path.startswith("/api/"):
            status, headers, body = self.emulator._api(path[5:], parts.query, raw, self.headers.get("Content-Type", ""),
                                                       self.headers.get("Authorization"))
        elif path.startswith("/upload/") and self.command == "POST":
            status, headers, body = self.emulator._upload(path[8:], raw)
        elif path.startswith("/response/") and self.command == "POST":
            status, headers, body = self.emulator._respond(path[10:], raw)
        elif path == "/_emulator/responses" and self.command == "GET":
            name = dict(parse_qsl(parts.query)).get("name", "")
            status, headers, body = 200, {}, {"ok": True, "count": len(self.emulator.responses_for(name))}
        elif path == "/_emulator/response_url" and self.command == "POST":
            # For an emulator in another process (sandbox, benchmarks): issue a response_url over HTTP.
            name = dict(parse_qsl(parts.query)).get("name")
            status, headers, body = 200, {}, {"ok": True, "response_url": self.emulator.response_url(name)}
        else:
            status, headers, body = 404, {}, "not found"
        is_json = isinstance(body, dict)
        data = (json.dumps(body) if is_json else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8" if is_json else "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.slack_emulator",
                                     description="Serve a local Slack Web API emulator in the foreground.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s slack-emulator %(message)s")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with SlackEmulator(options.host, options.port) as emulator:
        print(f"Slack emulator listening on {emulator.url}; set SLACK_API_URL={emulator.api_url}", flush=True)
        try:
            stopping.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
