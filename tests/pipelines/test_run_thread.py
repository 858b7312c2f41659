"""What a generated pipeline's run says in its thread (the run watcher against a scripted Airflow, the Slack
emulator): the request schema compared with production's, field by field; a failed task's own reason; a
deploy naming another model's package (issue 21, item 11: not recorded, said)."""

from __future__ import annotations

import urllib.parse

from sqlalchemy import select

from bot.pipelines.tables import ModelPackage
from bot.runs.service import watch_pass
from sandbox.scripted_airflow import run_json, task_json, xcom_json

DAG, RUN = "churn_lifecycle", "modelbot__20261127T050000Z_abc123"
BASE = f"/api/v2/dags/{DAG}/dagRuns/{urllib.parse.quote(RUN, safe='')}"

BLOCKED = {
    "uri": "s3://ml-artifacts/churn/churn_lifecycle/r/schemas.json", "requests_checked": 200,
    "predictions_checked": 200, "production_package": "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/4",
    "compared": True, "breaking": [{"field": "tenure", "change": "new required field"},
                                   {"field": "plan", "change": 'enum narrowed: "legacy" no longer accepted'}],
    "compatible": [{"field": "country", "change": "new optional field"}], "breaking_count": 2,
    "compatible_count": 1, "allowed": False, "blocked": True, "note": None,
}


def serve(fake, tasks: dict[str, str], xcoms: dict[tuple[str, str], object]) -> None:
    conf = {"model": "churn", "requested_by": "U0ALICE"}
    failed = any(state == "failed" for state in tasks.values())
    runs = {"dag_runs": [run_json(DAG, RUN, "failed" if failed else "success", conf=conf,
                                  start_date="2026-11-27T05:00:00Z", end_date="2026-11-27T05:01:05Z")],
            "total_entries": 1}
    instances = {"task_instances": [task_json(DAG, RUN, t, state) for t, state in tasks.items()],
                 "total_entries": len(tasks)}
    fake.routes[("GET", "/api/v2/dags/~/dagRuns")] = lambda seen: (200, runs)
    fake.routes[("GET", f"/api/v2/dags/{DAG}/tasks")] = lambda seen: (200, {"tasks": [], "total_entries": 0})
    fake.routes[("GET", f"{BASE}/taskInstances")] = lambda seen: (200, instances)
    for (task_id, key), value in xcoms.items():
        fake.routes[("GET", f"{BASE}/taskInstances/{task_id}/xcomEntries/{key}")] = (
            lambda seen, t=task_id, v=value, k=key: (200, {**xcom_json(DAG, RUN, t, v), "key": k}))


def thread(slack) -> list[str]:
    [parent] = [m for m in slack.messages("C0CHURN") if m.get("thread_ts") in (None, m["ts"])]
    return [m["text"] for m in slack.thread("C0CHURN", parent["ts"])[1:]]


def run_watcher(make_services, fake, passes: int = 2):
    services = make_services(AIRFLOW_URL=fake.url)
    try:
        for _ in range(passes):
            watch_pass(services)
        with services.store.session() as s:
            return s.scalars(select(ModelPackage)).all()
    finally:
        services.store.dispose()


def test_a_breaking_request_schema_is_shown_field_by_field_and_why_it_was_not_deployed(fake, slack, make_services):
    evaluation = {"metric": "auc", "candidate": 0.91, "production": 0.89, "promote": False,
                  "diagnostics_uri": None, "schema": BLOCKED}
    serve(fake, {"preprocess": "success", "train": "success", "evaluate": "success", "deploy": "skipped"},
          {("evaluate", "return_value"): evaluation})
    run_watcher(make_services, fake)
    [text] = [t for t in thread(slack) if "*Evaluation*" in t]
    assert text.splitlines()[1:] == [
        "Candidate *0.91* vs production *0.89*: +0.02, better.",
        ":no_entry_sign: Verdict: *not deployed*: its request schema would refuse requests production accepts "
        "(below).",
        ":no_entry: *Request schema*: 2 changes would refuse requests production accepts, so the candidate is not "
        "deployed:",
        "• `tenure`: new required field",
        '• `plan`: enum narrowed: "legacy" no longer accepted',
        "Request schema, compatible change:",
        "• `country`: new optional field",
        "Once callers send what it needs, deploy it with `/model retrain churn allow_breaking_schema=true`.",
    ]


def test_a_failed_tasks_own_reason_is_quoted_under_its_failure(fake, slack, make_services):
    reason = ("endpoint churn-prod splits its traffic (v41 50%, v42 50%): a rollout is in progress, and a "
              "candidate added now would be a third variant in a split that no rollout judges. Nothing was deployed.")
    serve(fake, {"preprocess": "success", "train": "success", "evaluate": "success", "deploy": "failed"},
          {("deploy", "modelbot_failure"): reason})
    run_watcher(make_services, fake)
    [failed] = [t for t in thread(slack) if t.startswith(":x: Task `deploy` failed")]
    assert failed.splitlines()[1] == f"> {reason}"


def test_a_failure_without_a_reason_still_links_the_log(fake, slack, make_services):
    serve(fake, {"preprocess": "failed"}, {})
    run_watcher(make_services, fake)
    [failed] = [t for t in thread(slack) if t.startswith(":x: Task `preprocess` failed")]
    assert "\n" not in failed and "log of try 1" in failed


def test_a_deploy_naming_another_models_package_is_not_recorded(fake, slack, make_services, aws):
    foreign = "arn:aws:sagemaker:us-east-1:123456789012:model-package/fraud/7"
    deploy = {"endpoint": "churn-prod", "stable_variant": "v41", "candidate_variant": "v42",
              "model_package_arn": foreign}
    serve(fake, {t: "success" for t in ("preprocess", "train", "evaluate", "deploy")},
          {("deploy", "return_value"): deploy})
    recorded = run_watcher(make_services, fake)
    assert recorded == []
    [said] = [t for t in thread(slack) if t.startswith(":package: Candidate `v42`")]
    assert (f":warning: Model Registry: package `{foreign}` is in model package group `fraud`, not `churn`, the "
            "group of churn's pipeline; modelbot did not record it and will not approve or reject it.") in said
