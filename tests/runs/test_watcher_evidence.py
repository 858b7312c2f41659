"""The watcher when a DAG breaks the XCom contract, and when the rollout cannot start: said in the thread, no crash."""

from __future__ import annotations

import sys
import types
import urllib.parse

import pytest
from sqlalchemy import select

from bot.runs.service import watch_pass
from bot.rollouts.tables import Rollout
from bot.runs.tables import Candidate, RunRecord
from sandbox.scripted_airflow import FakeAirflow, run_json, task_json, xcom_json

DAG, RUN = "churn_lifecycle", "modelbot__20261127T050000Z_abc123"
BASE = f"/api/v2/dags/{DAG}/dagRuns/{urllib.parse.quote(RUN, safe='')}"


@pytest.fixture
def rollout_raises(monkeypatch):
    def start_from_deploy(services, model_name, **kw):
        raise RuntimeError("SageMaker said no")

    try:
        import bot.rollouts.service as rollouts
    except ImportError:
        rollouts = types.ModuleType("bot.rollouts.service")
        monkeypatch.setitem(sys.modules, "bot.rollouts.service", rollouts)
    monkeypatch.setattr(rollouts, "start_from_deploy", start_from_deploy, raising=False)


def serve(fake: FakeAirflow, xcoms: dict) -> None:
    conf = {"model": "churn", "requested_by": "U0ALICE"}
    runs = {"dag_runs": [run_json(DAG, RUN, "success", conf=conf, start_date="2026-11-27T05:00:00Z",
                                  end_date="2026-11-27T05:01:05Z")], "total_entries": 1}
    tasks = {"task_instances": [task_json(DAG, RUN, t, "success") for t in ("preprocess", "train", "evaluate", "deploy")],
             "total_entries": 4}
    fake.routes[("GET", "/api/v2/dags/~/dagRuns")] = lambda seen: (200, runs)
    fake.routes[("GET", f"/api/v2/dags/{DAG}/tasks")] = lambda seen: (200, {"tasks": [], "total_entries": 0})
    fake.routes[("GET", f"{BASE}/taskInstances")] = lambda seen: (200, tasks)
    for task_id, value in xcoms.items():
        fake.routes[("GET", f"{BASE}/taskInstances/{task_id}/xcomEntries/return_value")] = (
            lambda seen, t=task_id, v=value: (200, xcom_json(DAG, RUN, t, v)))


def test_contract_breaks_and_a_failing_rollout_start_are_told_once(fake, slack, database_url, models_file, rollout_raises,
        make_services):
    # evaluate returned nothing (no XCom: Airflow answers 404); deploy returned what the contract asks.
    serve(fake, {"deploy": {"endpoint": "churn-prod", "stable_variant": "v41", "candidate_variant": "v42"}})
    services = make_services(AIRFLOW_URL=fake.url)
    try:
        for _ in range(3):  # later passes must add nothing
            assert "0 failed" in watch_pass(services)
        with services.store.session() as s:
            cand = s.scalars(select(Candidate)).one()
            run = s.scalars(select(RunRecord)).one()
    finally:
        services.store.dispose()
    [parent] = [m for m in slack.messages("C0CHURN") if m.get("thread_ts") in (None, m["ts"])]
    texts = [m["text"] for m in slack.thread("C0CHURN", parent["ts"])[1:]]
    assert len(texts) == 4, texts
    assert texts[0].startswith(":warning: Task `evaluate` succeeded, but what it returned does not follow the XCom "
                               "contract (it returned nothing)")
    assert texts[1].startswith(":package: Candidate `v42` is on endpoint `churn-prod` at weight 0, beside `v41`.")
    assert texts[2] == (":warning: The rollout of `v42` did not start: RuntimeError: SageMaker said no\n"
                        "The candidate is recorded; start it with `/model promote churn` once that is fixed.")
    assert texts[3].startswith(f":white_check_mark: Run `{RUN}` *succeeded* in 1m 05s")
    assert cand.rollout_error == "RuntimeError: SageMaker said no" and cand.rollout_started_at is None
    assert run.settled and run.requested_by == "U0ALICE"
    assert "Started by <@U0ALICE>" in parent["text"]


def test_a_deploy_naming_another_endpoint_starts_nothing_and_says_so(fake, slack, database_url, models_file,
                                                                      make_services):
    """Weights change only on the endpoint the models file names: a DAG that deployed elsewhere gets no rollout."""
    serve(fake, {"deploy": {"endpoint": "someone-elses-prod", "stable_variant": "v41", "candidate_variant": "v42"}})
    services = make_services(AIRFLOW_URL=fake.url)
    try:
        for _ in range(2):
            watch_pass(services)
        with services.store.session() as s:
            candidates = s.scalars(select(Candidate)).all()
            rollouts = s.scalars(select(Rollout)).all()
    finally:
        services.store.dispose()
    assert candidates == [] and rollouts == []
    [parent] = [m for m in slack.messages("C0CHURN") if m.get("thread_ts") in (None, m["ts"])]
    texts = [m["text"] for m in slack.thread("C0CHURN", parent["ts"])[1:]]
    [said] = [t for t in texts if "someone-elses-prod" in t]
    assert "the models file names `churn-prod`" in said and "no rollout starts" in said, said
