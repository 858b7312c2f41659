"""Keeps the endpoint snapshot (bot/status/snapshot.py) fresh: every registered endpoint, read once a pass.

`/model status` answers from it in the ack, without calling AWS. Concurrency and rate:
MODELBOT_SNAPSHOT_CONCURRENCY (default 8 threads), MODELBOT_SNAPSHOT_RATE (default 40 calls a second).
"""

from __future__ import annotations

from bot.status import snapshot

NAME = "endpoint_snapshot"


def run_once(services) -> str:
    return snapshot.take(services).summary()
