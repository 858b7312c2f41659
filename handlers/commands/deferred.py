"""Running a command's post-ack work in other processes, so acks never queue for the GIL behind it.

The web process acks, then hands the command (as plain data) to a small process pool; the child resolves it
again with its own services and answers through the response_url, as Slack expects.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

log = logging.getLogger(__name__)

_child_services = None
CHILD_NICENESS = 10


def _init_child() -> None:
    global _child_services
    # Post-ack work yields the CPU to the web process, whose acks have Slack's 3 s deadline.
    os.nice(CHILD_NICENESS)
    from bot.config import load_settings
    from bot.services import Services

    _child_services = Services.from_settings(load_settings(), migrate=False)
    # Spawned, not forked: the web process's warm font cache is not inherited, and /model status draws here.
    try:
        from charts.fonts import warm_font_cache

        warm_font_cache()
    except Exception:  # an initializer that raises breaks the pool: commands matter more than chart speed
        log.exception("matplotlib's font cache could not be warmed in a command process")


def _warm() -> bool:
    return _child_services is not None


def _run_in_child(payload: dict) -> None:
    from slack_sdk.webhook import WebhookClient

    from handlers.commands.model import resolve, run_after_ack
    from handlers.commands.spec import Invocation

    services = _child_services
    spec, line, model = resolve(payload["text"], services)
    webhook = WebhookClient(payload["response_url"], timeout=10)

    def reply(text: str, blocks: list | None = None, **kwargs) -> None:
        resp = webhook.send(text=text, blocks=blocks, response_type="ephemeral", replace_original=True, **kwargs)
        if resp.status_code >= 300:
            log.warning("Slack refused the reply to /model %s (%s): %s", spec.name, resp.status_code, resp.body)

    inv = Invocation(
        services=services, user_id=payload["user_id"], channel_id=payload["channel_id"], line=line, model=model,
        reply=reply, client=services.slack, body=payload["body"], trigger_id=payload.get("trigger_id"),
    )
    run_after_ack(spec, inv)


class ProcessDeferral:
    def __init__(self, processes: int = 2):
        self._processes = processes
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            max_workers=self._processes, mp_context=multiprocessing.get_context("spawn"), initializer=_init_child
        )
        # Pay the imports now, not in the first user's command.
        self._warming = [pool.submit(_warm) for _ in range(self._processes)]
        return pool

    def ready(self) -> bool:
        return all(f.done() for f in self._warming)

    def submit(self, command: dict, body: dict) -> None:
        payload = {
            "text": command.get("text", ""),
            "user_id": command.get("user_id", ""),
            "channel_id": command.get("channel_id", ""),
            "response_url": command.get("response_url", ""),
            "trigger_id": command.get("trigger_id"),
            "body": body,
        }
        with self._lock:
            try:
                future = self._pool.submit(_run_in_child, payload)
            except BrokenProcessPool:
                log.error("the command process pool died; starting a new one")
                self._pool = self._new_pool()
                future = self._pool.submit(_run_in_child, payload)
        future.add_done_callback(_log_failure)


def _log_failure(future) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("deferred /model command failed: %r", exc)
