"""/model retrain against a real Airflow 3.3.2: the run really runs, and its Slack thread follows it.

Slack is the emulator, SageMaker and S3 are moto (the DAG's deploy task talks to it from inside Airflow), the
app is `python -m bot` over signed HTTP. The run watcher runs in this process, as two workers at once on
every pass, each with fresh state (a restart each time); the rollout capability is replaced by a recorder so
these tests watch only what the run watcher does.
"""

from __future__ import annotations

import re
import sys
import time
import types
import urllib.parse

import boto3
import pytest
import requests
from sqlalchemy import select

from bot.integrations.airflow import AirflowAdapter, AirflowAuthError
from bot.config import Settings
from bot.services import Services
from bot.store.foundation import AuditEntry
from bot.runs.tables import Candidate, Evaluation, RunRecord
from tests.airflow.conftest import SECURED_PASSWORD, SECURED_USER, TOKEN_SECONDS, create_endpoint
from tests.harness import BOT_TOKEN, AppProcess, app_env, run_jobs_once, wait_until
from tests.watcher_workers import two_workers_pass


def settings_for(slack, database_url, models_file, airflow_url, **extra) -> Settings:
    return Settings(_env_file=None, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_API_URL=slack.api_url, DATABASE_URL=database_url,
                    MODELS_FILE=str(models_file), AIRFLOW_URL=airflow_url, MODELBOT_JOB_INTERVAL_SECONDS=1, **extra)


def ephemeral_text(slack, rid: str, timeout: float = 20) -> str:
    slack.wait_for(lambda: slack.responses_for(rid), timeout=timeout)
    return slack.responses_for(rid)[-1].body["text"]


def run_id_from(text: str) -> str:
    return re.search(r"run `([^`]+)`", text).group(1)


def thread_by_run(slack, channel: str, run_id: str) -> list[dict]:
    parent = next(m for m in slack.messages(channel) if m.get("thread_ts") in (None, m["ts"]) and run_id in m["text"])
    return slack.thread(channel, parent["ts"])


def event_keys(messages: list[dict]) -> list[str]:
    return [((m.get("metadata") or {}).get("event_payload") or {}).get("key") for m in messages]


@pytest.fixture
def rollout_starts(monkeypatch):
    """Stands in for bot.rollouts.service.start_from_deploy and records what it was handed."""
    calls: list[dict] = []

    def start_from_deploy(services, model_name, **kw):
        calls.append({"model": model_name, **kw})

    try:
        import bot.rollouts.service as rollouts
    except ImportError:
        rollouts = types.ModuleType("bot.rollouts.service")
        monkeypatch.setitem(sys.modules, "bot.rollouts.service", rollouts)
    monkeypatch.setattr(rollouts, "start_from_deploy", start_from_deploy, raising=False)
    return calls


def test_paused_dag_is_reported_and_nothing_is_triggered(airflow, aws, slack, models_file, tmp_path):
    admin = AirflowAdapter(airflow.url)
    admin.set_paused("fraud_lifecycle", True)
    env = app_env(slack=slack, moto_url=aws, database_url=f"sqlite:///{tmp_path / 'm.db'}", models_file=models_file,
                  AIRFLOW_URL=airflow.url)
    app = AppProcess(env, tmp_path / "app.log").start()
    try:
        resp, rid = app.command("retrain fraud", slack=slack, user_id="U0CAROL", channel_id="C0FRAUD")
        assert resp.status_code == 200
        text = ephemeral_text(slack, rid)
    finally:
        app.stop()
    assert "`fraud_lifecycle` is paused" in text and "not triggered" in text, text
    assert f"{airflow.url}/dags/fraud_lifecycle" in text  # where to unpause it
    runs, _ = admin.changed_runs(["fraud_lifecycle"], None)
    assert runs == []
    assert slack.messages("C0FRAUD") == []


def test_retrain_runs_in_airflow_and_its_thread_follows_the_run(
    airflow, aws, slack, models_file, flow_database_url, tmp_path, rollout_starts
):
    create_endpoint("churn-prod", "v41")
    AirflowAdapter(airflow.url).set_paused("churn_lifecycle", False)
    env = app_env(slack=slack, moto_url=aws, database_url=flow_database_url, models_file=models_file,
                  AIRFLOW_URL=airflow.url)
    settings = settings_for(slack, flow_database_url, models_file, airflow.url)
    app = AppProcess(env, tmp_path / "app.log").start()
    try:
        # A run made to fail first: the DAG allows one active run, so the good run queues behind it.
        started = time.monotonic()
        resp, rid_bad = app.command("retrain churn fail=train", slack=slack)
        assert resp.status_code == 200 and time.monotonic() - started < 3
        assert "Triggering *churn* retraining" in resp.json()["text"]
        bad_reply = ephemeral_text(slack, rid_bad)
        resp, rid_good = app.command("retrain churn epochs=150", slack=slack)
        good_reply = ephemeral_text(slack, rid_good)
        bad_run, good_run = run_id_from(bad_reply), run_id_from(good_reply)

        # The user is answered with a link to the run's thread, which is open in the model's channel.
        assert "Retraining of *churn* started" in good_reply
        assert "https://emulator.slack/archives/C0CHURN/p" in good_reply
        parent = thread_by_run(slack, "C0CHURN", good_run)[0]
        assert "<@U0ALICE>" in parent["text"] and '{"epochs": "150"}' in parent["text"]
        assert f"{airflow.url}/dags/churn_lifecycle/runs/{urllib.parse.quote(good_run, safe='')}" in parent["text"]

        # The real worker entry point takes a pass too (a third process, started and stopped).
        done = run_jobs_once(dict(env, MODELBOT_JOB_INTERVAL_SECONDS="1"))
        assert "run_watcher: " in done.stdout and "run_watcher: failed" not in done.stdout, done.stdout + done.stderr

        def both_settled():
            two_workers_pass(settings)
            services = Services.from_settings(settings, migrate=False)
            with services.store.session() as s:
                rows = s.scalars(select(RunRecord).where(RunRecord.run_id.in_([bad_run, good_run]))).all()
            services.store.dispose()
            return len(rows) == 2 and all(r.settled for r in rows)

        wait_until(both_settled, timeout=240, interval=1, message="both runs to finish and be reported")
        two_workers_pass(settings)  # one more pass after the end must post nothing new

        status_resp, rid_status = app.command("status churn", slack=slack)
        status_text = ephemeral_text(slack, rid_status)
    finally:
        app.stop()

    # The successful run: the parent was edited in place up to its final state, one line per task.
    good = thread_by_run(slack, "C0CHURN", good_run)
    parent, replies = good[0], good[1:]
    assert parent["edits"], "the parent message was never updated in place"
    assert ":white_check_mark: *churn* retraining run" in parent["text"] and "*success in " in parent["text"]
    for task in ("preprocess", "train", "evaluate", "deploy"):
        assert f":white_check_mark: `{task}` success" in parent["text"], parent["text"]
    texts = [r["text"] for r in replies]
    evaluation = next(t for t in texts if "*Evaluation*" in t)
    assert "`auc` (higher is better)" in evaluation
    assert re.search(r"Candidate \*0\.\d+\* vs production \*0\.\d+\*: \+0\.\d+, better\.", evaluation), evaluation
    assert "Verdict: *promote*" in evaluation
    assert any("Candidate `v42` is on endpoint `churn-prod` at weight 0, beside `v41`" in t for t in texts), texts
    assert any("*succeeded* in" in t for t in texts), texts
    assert not any("failed on try" in t for t in texts)

    # The run made to fail: one reply for the failed task, with its try and log link, then the end.
    bad = thread_by_run(slack, "C0CHURN", bad_run)
    bad_texts = [m["text"] for m in bad[1:]]
    failure = next(t for t in bad_texts if "failed on try" in t)
    assert failure.startswith(":x: Task `train` failed on try 1 and will not be retried.")
    assert f"/dags/churn_lifecycle/runs/{urllib.parse.quote(bad_run, safe='')}/tasks/train?try_number=1|" in failure
    assert any("*failed* after" in t and "`train` failed" in t for t in bad_texts), bad_texts
    assert ":x: `train` failed" in bad[0]["text"]
    assert not any("*Evaluation*" in t for t in bad_texts)

    # Each event exactly once, although two workers (restarted every pass) and the jobs process all watched.
    for run_id in (good_run, bad_run):
        keys = [k for k in event_keys(thread_by_run(slack, "C0CHURN", run_id)) if k]  # file shares carry no key
        assert len(keys) == len(set(keys)), keys
    # The evidence as images, once each, in the run's own thread, with alt text that reads without the image.
    good_files = [f for f in slack.files if f.thread_ts == good[0]["ts"]]
    assert sorted(f.filename.split("-")[0] for f in good_files) == ["diagnostics", "evaluation", "runs"], good_files
    assert all(f.alt_txt for f in good_files)
    parents = [k for k in event_keys(slack.messages("C0CHURN")) if k and k.endswith("/parent")]
    assert len(parents) == len(set(parents))

    # The evidence is remembered, the candidate is really on the endpoint, and the rollout was handed it once.
    services = Services.from_settings(settings, migrate=False)
    with services.store.session() as s:
        ev = s.scalars(select(Evaluation).where(Evaluation.run_id == good_run)).one()
        cand = s.scalars(select(Candidate).where(Candidate.run_id == good_run)).one()
        audit = s.scalars(select(AuditEntry).where(AuditEntry.action == "retrain")).all()
    services.store.dispose()
    assert ev.metric == "auc" and ev.promote and ev.candidate > ev.production and ev.direction == "maximize"
    assert ev.diagnostics_uri == f"s3://modelbot-diagnostics/churn_lifecycle/{good_run}/diagnostics.csv"
    body = boto3.client("s3", region_name="us-east-1").get_object(
        Bucket="modelbot-diagnostics", Key=f"churn_lifecycle/{good_run}/diagnostics.csv")["Body"].read().decode()
    assert body.startswith("y_true,y_pred")
    assert (cand.endpoint, cand.stable_variant, cand.candidate_variant) == ("churn-prod", "v41", "v42")
    assert cand.rollout_started_at is not None and not cand.consumed
    weights = {v["VariantName"]: v.get("CurrentWeight", 0.0) for v in boto3.client("sagemaker", region_name="us-east-1")
               .describe_endpoint(EndpointName="churn-prod")["ProductionVariants"]}
    assert weights == {"v41": 1.0, "v42": 0.0}
    assert rollout_starts == [{"model": "churn", "endpoint": "churn-prod", "stable_variant": "v41",
                               "candidate_variant": "v42", "run_id": good_run, "channel": "C0CHURN",
                               "thread_ts": good[0]["ts"]}]
    assert sorted((a.outcome, a.detail["run_id"]) for a in audit) == sorted([("ok", good_run), ("ok", bad_run)])

    # /model status churn lists the runs with state, duration and who started them.
    assert "Last 2 runs" in status_text, status_text
    assert re.search(r"success, took \d+(m \d+)?s, started by <@U0ALICE>", status_text), status_text
    assert re.search(r"failed, took \d+(m \d+)?s, started by <@U0ALICE>", status_text), status_text


def test_token_auth_with_the_all_admins_shortcut_off(airflow, airflow_secured, aws, slack, models_file, tmp_path):
    AirflowAdapter(airflow.url).set_paused("churn_lifecycle", False)

    # Without credentials, the secured Airflow says 401 and the message says what to set.
    with pytest.raises(AirflowAuthError) as anonymous:
        AirflowAdapter(airflow_secured.url).get_dag("churn_lifecycle")
    assert "401" in str(anonymous.value) and "AIRFLOW_TOKEN" in str(anonymous.value)
    with pytest.raises(AirflowAuthError) as wrong:
        AirflowAdapter(airflow_secured.url, username=SECURED_USER, password="wrong").get_dag("churn_lifecycle")
    assert "rejected the login" in str(wrong.value) and "AIRFLOW_PASSWORD" in str(wrong.value)

    # Username and password, through a signed /model retrain: the run is triggered as that Airflow user.
    env = app_env(slack=slack, moto_url=aws, database_url=f"sqlite:///{tmp_path / 'm.db'}", models_file=models_file,
                  AIRFLOW_URL=airflow_secured.url, AIRFLOW_UI_URL=airflow.url,
                  AIRFLOW_USERNAME=SECURED_USER, AIRFLOW_PASSWORD=SECURED_PASSWORD)
    app = AppProcess(env, tmp_path / "app.log").start()
    try:
        _, rid = app.command("retrain churn fail=preprocess", slack=slack)
        reply = ephemeral_text(slack, rid)
    finally:
        app.stop()
    run_id = run_id_from(reply)
    info = AirflowAdapter(airflow.url).get_run("churn_lifecycle", run_id)
    assert info.triggering_user == SECURED_USER and info.conf["requested_by"] == "U0ALICE"

    # A token from POST /auth/token (AIRFLOW_TOKEN) works until it expires; then the message says so.
    token = requests.post(f"{airflow_secured.url}/auth/token", timeout=10,
                          json={"username": SECURED_USER, "password": SECURED_PASSWORD}).json()["access_token"]
    with_token = AirflowAdapter(airflow_secured.url, token=token)
    runs, _ = with_token.changed_runs(["churn_lifecycle"], None)
    assert run_id in {r.run_id for r in runs}
    with_password = AirflowAdapter(airflow_secured.url, username=SECURED_USER, password=SECURED_PASSWORD)
    assert not with_password.get_dag("churn_lifecycle").is_paused
    time.sleep(TOKEN_SECONDS + 1)
    with pytest.raises(AirflowAuthError) as expired:
        with_token.get_dag("churn_lifecycle")
    assert "AIRFLOW_TOKEN was rejected" in str(expired.value)
    # The password adapter's token expired just the same: it logs in again by itself and carries on.
    assert with_password.get_run("churn_lifecycle", run_id).run_id == run_id
