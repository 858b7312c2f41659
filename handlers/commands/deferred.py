"""Running a command's post-ack work in other processes, so acks never queue for the GIL behind it.

The web process acks, then hands the command (as plain data) to a small process pool; the child resolves it
again with its own services and answers through the response_url, as Slack expects.

The children are warm before the first command: a fork server loads every subcommand's imports, the Airflow
client, the chart modules and matplotlib's font cache once (handlers/commands/warm.py), each child is forked
from it, and the pool is "ready" (GET /healthz) only once every child has started. The queue is bounded (MODELBOT_COMMAND_QUEUE, commands running or waiting, default
32): past it, the ack says "busy, try again in a minute" instead of promising an answer that would come late.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from slack_sdk.webhook import WebhookClient

from bot.config import load_settings
from bot.services import Services
from handlers.commands.model import resolve, run_after_ack
from handlers.commands.spec import Invocation

log = logging.getLogger(__name__)

_child_services = None
_barrier = None
CHILD_NICENESS = 10
QUEUE_ENV = "MODELBOT_COMMAND_QUEUE"
DEFAULT_QUEUE = 32
WARM_TIMEOUT = 120
WARM_MODULE = "handlers.commands.warm"


def _init_child(barrier) -> None:
    """In each command process, forked from the warm fork server: only what must not be shared across a fork."""
    global _child_services, _barrier
    _barrier = barrier
    _child_services = Services.from_settings(load_settings(), migrate=False)
    try:
        _child_services.airflow  # builds the adapter (no network)
        _child_services.store.ping()  # the first connection (and SQLite's pragmas) before the first command
    except Exception:
        log.exception("a command process could not prepare Airflow or the database; its first command will")
    # Post-ack work yields the CPU to the web process, whose acks have Slack's 3 s deadline.
    os.nice(CHILD_NICENESS)


def _warm() -> bool:
    """Returns once every child has started: each warm-up call holds its child until all have arrived."""
    if _barrier is not None:
        try:
            _barrier.wait(WARM_TIMEOUT)
        except threading.BrokenBarrierError:
            pass
    return _child_services is not None


def _run_in_child(payload: dict) -> None:
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
    def __init__(self, processes: int = 2, max_queued: int | None = None):
        self._processes = processes
        self.max_queued = max_queued or int(os.environ.get(QUEUE_ENV) or DEFAULT_QUEUE)
        self._lock = threading.Lock()
        self._queued = 0  # admitted and not finished: running in a child or waiting for one
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # Forked from a fork server that imported handlers/commands/warm.py once: warm children, started in
        # milliseconds, without inheriting the web process's threads (a plain fork could deadlock on them).
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([WARM_MODULE])
        barrier = context.Barrier(self._processes)
        pool = ProcessPoolExecutor(max_workers=self._processes, mp_context=context, initializer=_init_child,
                                   initargs=(barrier,))
        # Pay the imports now, not in the first user's command; the barrier makes every child take one.
        self._warming = [pool.submit(_warm) for _ in range(self._processes)]
        return pool

    def ready(self) -> bool:
        return all(f.done() for f in self._warming)

    @property
    def queued(self) -> int:
        return self._queued

    def admit(self) -> bool:
        """Reserve a place for one command (before its ack); False when the queue is full."""
        with self._lock:
            if self._queued >= self.max_queued:
                return False
            self._queued += 1
            return True

    def _release(self, _future=None) -> None:
        with self._lock:
            self._queued = max(0, self._queued - 1)

    def submit(self, command: dict, body: dict) -> None:
        """Run an admitted command in a child."""
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
        future.add_done_callback(self._release)
        future.add_done_callback(_log_failure)


def _log_failure(future) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("deferred /model command failed: %r", exc)
