"""boto3 clients with timeouts and botocore's standard retry mode (throttling is retried with backoff)."""

from __future__ import annotations

import functools

import boto3
from botocore.config import Config

AWS_CONNECT_TIMEOUT = 3
AWS_READ_TIMEOUT = 10


def client_config(max_attempts: int = 4) -> Config:
    return Config(
        connect_timeout=AWS_CONNECT_TIMEOUT,
        read_timeout=AWS_READ_TIMEOUT,
        retries={"mode": "standard", "max_attempts": max_attempts},
    )


@functools.lru_cache(maxsize=64)
def client(service: str, region: str):
    """Cached per (service, region): boto3 clients are thread-safe and costly to build.

    AWS_ENDPOINT_URL and credentials come from the environment, as boto3 reads them.
    """
    return boto3.session.Session().client(service, region_name=region, config=client_config())
