"""What the sandbox's Slack-like page shows and sends, over the Slack emulator (sandbox/page_server.py serves it).

What the person does on the page reaches modelbot exactly as Slack would send it: slash commands as signed
form posts to /slack/events with a `response_url`, button clicks as signed `block_actions` payloads, and
@modelbot mentions as signed `app_mention` events. What modelbot answers is read back from the emulator
(chat.postMessage/update, file uploads, postEphemeral) and from the response_urls it POSTed to, and shown
the way Slack shows it: a slash command's reply is an ephemeral message "Only visible to you", which a later
`replace_original` replaces; a button click's `replace_original` replaces the message the button was on.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from sandbox.pagerduty import FakePagerDuty
from sandbox.slack_emulator import SlackEmulator
from sandbox.try_request import TryRequest

BOT_TIMEOUT_SECONDS = 10


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
    runtime_url: str | None = None  # the sandbox's SageMaker hosting: InvokeEndpoint and GET /state
    team_id: str = "T0EMULATOR"
    extra: dict[str, Any] = field(default_factory=dict)


class PageState:
    def __init__(self, world: World):
        self.world = world
        self.try_request = TryRequest(world.runtime_url)
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
            body = json_or_text(raw)
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


def json_or_text(raw: bytes) -> dict:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
        return body if isinstance(body, dict) else {"text": str(body)}
    except ValueError:
        return {"text": raw.decode(errors="replace")}
