"""boto3 clients with timeouts and botocore's standard retry mode (throttling is retried with backoff)."""

from __future__ import annotations

import os
import threading

import boto3
from botocore.config import Config

AWS_CONNECT_TIMEOUT = 3
AWS_READ_TIMEOUT = 10
DEFAULT_ATTEMPTS = 4


def client_config(max_attempts: int = DEFAULT_ATTEMPTS) -> Config:
    return Config(
        connect_timeout=AWS_CONNECT_TIMEOUT,
        read_timeout=AWS_READ_TIMEOUT,
        retries={"mode": "standard", "max_attempts": max_attempts},
    )


def single_attempt_config() -> Config:
    # total_max_attempts: botocore's `max_attempts` counts retries after the first try, not tries.
    return Config(connect_timeout=AWS_CONNECT_TIMEOUT, read_timeout=AWS_READ_TIMEOUT,
                  retries={"mode": "standard", "total_max_attempts": 1})


class AwsClients:
    """The boto3 clients of one process, built once per (service, region, attempts) and shared: boto3 clients
    are thread-safe and costly to build. Built where the services are assembled (bot.services.Services).

    AWS_ENDPOINT_URL and credentials come from the environment, as boto3 reads them; the endpoint settings
    are part of the key, so a process that points boto3 elsewhere gets a new client.

    `deadline` (read_timeout, total tries) gives every client of this set a bound on one call, for a caller
    on a clock of its own: the rollout controller's calls must end well within its tick.
    """

    def __init__(self, *, deadline: tuple[float, int] | None = None) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple, object] = {}
        self.deadline = deadline

    def _config(self, attempts: int) -> Config:
        if self.deadline is not None:
            read_timeout, tries = self.deadline
            return Config(connect_timeout=AWS_CONNECT_TIMEOUT, read_timeout=read_timeout,
                          retries={"mode": "standard", "total_max_attempts": min(tries, max(1, attempts))})
        return single_attempt_config() if attempts == 1 else client_config(attempts)

    def client(self, service: str, region: str, *, attempts: int = DEFAULT_ATTEMPTS):
        """`attempts` == 1: no botocore retries (the caller paces and backs off itself)."""
        key = (service, region, attempts, os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}"),
               os.environ.get("AWS_ENDPOINT_URL"))
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                found = boto3.session.Session().client(service, region_name=region, config=self._config(attempts))
                self._clients[key] = found
            return found
