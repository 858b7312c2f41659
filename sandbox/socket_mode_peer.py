"""Slack's side of Socket Mode, locally: a WebSocket server that says hello, sends envelopes, collects acks."""

from __future__ import annotations

import json
import queue
import threading
import uuid

from websockets.sync.server import serve


class SocketModePeer:
    def __init__(self):
        self.acks: "queue.Queue[dict]" = queue.Queue()
        self._outbox: "queue.Queue[dict]" = queue.Queue()
        self.connected = threading.Event()
        self._server = serve(self._session, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/link"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _session(self, ws):
        ws.send(json.dumps({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0MODELBOT"}}))
        self.connected.set()
        while True:
            try:
                envelope = self._outbox.get(timeout=0.05)
                ws.send(json.dumps(envelope))
            except queue.Empty:
                pass
            try:
                message = ws.recv(timeout=0.05)
            except TimeoutError:
                continue
            except Exception:
                return
            self.acks.put(json.loads(message))

    def send_slash_command(self, payload: dict) -> str:
        envelope_id = str(uuid.uuid4())
        self._outbox.put({"envelope_id": envelope_id, "type": "slash_commands", "payload": payload,
                          "accepts_response_payload": True})
        return envelope_id

    def stop(self):
        self._server.shutdown()
