"""/model retrain over signed HTTP when Airflow cannot take it: a clear reply within Slack's 3 s, nothing recorded."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from bot.store import Store
from bot.store.foundation import AuditEntry, Thread
from bot.runs.tables import RunEvent, RunRecord
from tests.harness import AppProcess, app_env, free_port


def counts(database_url: str) -> dict[str, int]:
    store = Store(database_url)
    try:
        with store.session() as s:
            return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) for t in (RunRecord, RunEvent, Thread)}
    finally:
        store.dispose()


def audit(database_url: str) -> list[AuditEntry]:
    store = Store(database_url)
    try:
        with store.session() as s:
            return list(s.scalars(select(AuditEntry).where(AuditEntry.action == "retrain")))
    finally:
        store.dispose()


def test_airflow_refusing_connections(slack, moto_url, database_url, models_file, tmp_path):
    airflow_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = app_env(slack=slack, moto_url=moto_url, database_url=database_url, models_file=models_file,
                  AIRFLOW_URL=airflow_url)
    app = AppProcess(env, tmp_path / "app.log").start()
    try:
        sent = time.monotonic()
        resp, rid = app.command("retrain churn epochs=3", slack=slack)
        assert resp.status_code == 200 and "Triggering *churn* retraining" in resp.json()["text"]
        slack.wait_for(lambda: slack.responses_for(rid), timeout=3)
        answered = time.monotonic() - sent
    finally:
        app.stop()
    assert answered < 3
    assert slack.responses_for(rid)[-1].body["text"] == (
        f":warning: Airflow at {airflow_url} could not be reached (connection refused); "
        "the DAG `churn_lifecycle` was not triggered."
    )
    assert counts(database_url) == {"runs": 0, "run_events": 0, "threads": 0}
    [entry] = audit(database_url)
    assert (entry.user_id, entry.model, entry.outcome) == ("U0ALICE", "churn", "failed")
    assert "connection refused" in entry.reason and entry.detail["conf"] == {"epochs": "3"}
    assert slack.messages("C0CHURN") == []


def test_rejected_requests_change_nothing(slack, moto_url, sqlite_url, models_file, tmp_path):
    env = app_env(slack=slack, moto_url=moto_url, database_url=sqlite_url, models_file=models_file)  # no AIRFLOW_URL
    app = AppProcess(env, tmp_path / "app.log").start()
    replies = {}
    try:
        for text, user in [("retrain churn", "U0ALICE"), ("retrain churn epochs", "U0ALICE"),
                           ("retrain churn model=fraud", "U0ALICE"), ("retrain churn", "U0CAROL"),
                           ("retrain", "U0ALICE")]:
            resp, rid = app.command(text, slack=slack, user_id=user)
            assert resp.status_code == 200
            body = resp.json()
            if "Triggering" in body.get("text", ""):
                slack.wait_for(lambda: slack.responses_for(rid), timeout=3)
                body = slack.responses_for(rid)[-1].body
            replies[(text, user)] = body["text"]
    finally:
        app.stop()
    assert replies[("retrain churn", "U0ALICE")] == (
        ":warning: Airflow is not configured (set AIRFLOW_URL); nothing was triggered.")
    assert "`epochs` is not key=value" in replies[("retrain churn epochs", "U0ALICE")]
    assert "`model` is set by modelbot itself" in replies[("retrain churn model=fraud", "U0ALICE")]
    assert "Usage: `/model retrain &lt;model&gt; [key=value ...]`" in replies[("retrain churn model=fraud", "U0ALICE")]
    assert "Only the owners of *churn* or an admin may retrain" in replies[("retrain churn", "U0CAROL")]
    assert "missing the model name" in replies[("retrain", "U0ALICE")]
    assert counts(sqlite_url) == {"runs": 0, "run_events": 0, "threads": 0}
    assert slack.messages("C0CHURN") == []
