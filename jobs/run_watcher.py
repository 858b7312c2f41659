"""The Airflow run watcher: keeps every registered DAG's runs' threads up to date (see bot/runs.py)."""

from __future__ import annotations

from bot.runs.service import watch_pass

NAME = "run_watcher"


def run_once(services) -> str:
    return watch_pass(services)
