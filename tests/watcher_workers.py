"""Two run-watcher workers at once, as two worker processes would run: the exactly-once claims under race."""

from __future__ import annotations

import threading

from bot.config import Settings
from bot.runs.service import watch_pass
from bot.services import Services


def two_workers_pass(settings: Settings, timeout: float = 120) -> list[str]:
    """One watcher pass by two workers at once, each freshly started (own engine, own Airflow client)."""
    results: list[str] = []

    def worker():
        services = Services.from_settings(settings, migrate=False)
        try:
            results.append(watch_pass(services))
        finally:
            services.store.dispose()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    return results
