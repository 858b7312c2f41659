"""The generated pipeline DAG (dags/modelbot_pipelines.py) in a real Airflow 3.3.2, end to end.

One test, several runs at once: `/model retrain` of a model with a production endpoint and an Approved package
(evaluated against production on the same data, candidate on the endpoint at weight 0, package pending, the
rollout starts; rolled back by hand -> Rejected; a second run promoted -> Approved), a first model (its endpoint
is created) and a broken module (the task fails with the message naming the function). Slack is the emulator,
AWS is moto with the UpdateEndpoint fake in front of SageMaker (for Airflow's tasks through the `aws_default`
connection, for modelbot through AWS_ENDPOINT_URL_SAGEMAKER); the app is `python -m bot`; the jobs run here.
"""

from __future__ import annotations

import importlib
import json
import pickle
import re
import shutil
import subprocess
import time
import urllib.parse

import boto3
import pytest
import requests
from sqlalchemy import select

from bot.config import Settings
from bot.integrations.airflow import AirflowAdapter
from bot.pipelines import dag_file, packages
from bot.rollouts.tables import Rollout
from bot.runs.tables import RunRecord
from bot.services import Services
from sandbox.update_endpoint_proxy import SageMakerProxy
from tests.airflow.airflow_process import CONSTRAINTS, ensure_venv
from tests.endpoints import create_endpoint
from tests.harness import BOT_TOKEN, ROOT, AppProcess, app_env, wait_until

REGION = "us-east-1"
BUCKET = "ml-artifacts"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn-serving:latest"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"

MODELS = f"""
[defaults]
region = "us-east-1"
alert_channel = "C0ALERTS"
oncall = "S0ONCALL"
admins = ["U0ADMIN"]

[models.churn]
dag_id = "churn_pipeline"
endpoint = "churn-prod"
channel = "C0CHURN"
metric = "auc"
owners = ["U0ALICE"]
oncall = "U0BOB"
[models.churn.rollout]
steps = [50, 100]
bake_minutes = 0
[models.churn.pipeline]
module = "churn_model"
label = "churned"
image = "{IMAGE}"
artifacts = "s3://{BUCKET}/churn"

[models.fresh]
dag_id = "fresh_pipeline"
endpoint = "fresh-prod"
channel = "C0FRESH"
metric = "logloss"
direction = "minimize"
owners = ["U0ALICE"]
[models.fresh.pipeline]
module = "churn_model"
label = "churned"
image = "{IMAGE}"
artifacts = "s3://{BUCKET}/fresh"
execution_role = "{ROLE}"

[models.broken]
dag_id = "broken_pipeline"
endpoint = "broken-prod"
channel = "C0BROKEN"
metric = "auc"
owners = ["U0ALICE"]
[models.broken.pipeline]
module = "broken_model"
label = "churned"
image = "{IMAGE}"
artifacts = "s3://{BUCKET}/broken"
"""

BROKEN_MODULE = '''
import pandas as pd


def preprocess(conf):
    frame = pd.DataFrame({"tenure_z": [0.1, 0.2, 0.3], "complaints_z": [1.0, 0.0, 1.0]})
    return {"train": frame, "validation": frame}


def train(frame, conf):
    return {}


def predict(model, features):
    return [0.5] * len(features)


REQUEST_SCHEMA = {"type": "object"}
RESPONSE_SCHEMA = {"type": "number"}
'''
PIPELINE_DAGS = ("churn_pipeline", "fresh_pipeline", "broken_pipeline")
DAG_FILES = ("modelbot_pipelines.py", "modelbot_contract.py", "modelbot_schemas.py", "modelbot_sagemaker.py")


@pytest.fixture(scope="session")
def pipeline_venv():
    """The workers need pandas and numpy besides Airflow and boto3 (the README says so): add them once."""
    venv = ensure_venv()
    python = venv / "bin" / "python"
    if subprocess.run([str(python), "-c", "import pandas, numpy"], capture_output=True).returncode != 0:
        pins = [line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines()
                if line.startswith(("pandas==", "numpy=="))]
        result = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                                 *pins, "-c", str(CONSTRAINTS)], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    return venv


@pytest.fixture
def proxy(moto_url):
    server = SageMakerProxy(moto_url).start()
    yield server
    server.stop()


@pytest.fixture
def pipeline_dags(pipeline_venv, airflow, proxy, tmp_path):
    """The DAG file, its modules and models file in Airflow's DAGs folder, parsed now; tasks reach SageMaker
    through the UpdateEndpoint fake by the `aws_default` connection (as the amazon provider would configure it)."""
    folder = airflow.dags
    for name in DAG_FILES:
        shutil.copy(ROOT / "dags" / name, folder / name)
    shutil.copy(ROOT / "dags" / "examples" / "churn_model.py", folder / "churn_model.py")
    (folder / "broken_model.py").write_text(BROKEN_MODULE)
    (folder / "models.toml").write_text(MODELS)
    extra = {"region_name": REGION, "service_config": {"sagemaker": {"endpoint_url": proxy.url}}}
    requests.delete(f"{airflow.url}/api/v2/connections/aws_default", timeout=10)
    created = requests.post(f"{airflow.url}/api/v2/connections", timeout=10, json={
        "connection_id": "aws_default", "conn_type": "aws", "extra": json.dumps(extra)})
    assert created.status_code in (200, 201), created.text
    # New files wait for the DAG processor's next folder scan (minutes): serialize them now instead.
    done = subprocess.run([str(pipeline_venv / "bin" / "airflow"), "dags", "reserialize"], env=airflow.env, cwd=airflow.home,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    wait_until(lambda: all(airflow._dag_visible(d) for d in PIPELINE_DAGS), timeout=120, interval=1,
               message="the generated DAGs in Airflow")
    admin = AirflowAdapter(airflow.url)
    for dag_id in PIPELINE_DAGS:
        admin.set_paused(dag_id, False)
    models = tmp_path / "models.toml"
    models.write_text(MODELS)
    yield models
    try:  # Airflow may be stopped already (the last test here stops it before fixtures are torn down)
        for dag_id in PIPELINE_DAGS:
            admin.set_paused(dag_id, True)
        requests.delete(f"{airflow.url}/api/v2/connections/aws_default", timeout=10)
    except Exception:
        pass
    for name in (*DAG_FILES, "churn_model.py", "broken_model.py", "models.toml"):
        (folder / name).unlink(missing_ok=True)


def jobs_pass(settings: Settings) -> dict[str, str]:
    """One pass of every job, in the worker's order, in this process (a fresh worker each time)."""
    import jobs

    services = Services.from_settings(settings, migrate=False)
    try:
        return {m: importlib.import_module(f"jobs.{m}").run_once(services) for m in jobs.MODULES}
    finally:
        services.store.dispose()


def reply(slack, rid: str, timeout: float = 30) -> dict:
    return wait_until(lambda: slack.responses_for(rid), timeout=timeout, message=f"a reply to {rid}")[-1].body


def run_id_of(slack, rid: str) -> str:
    return re.search(r"run `([^`]+)`", reply(slack, rid)["text"]).group(1)


def thread_texts(slack, channel: str, run_id: str) -> list[str]:
    parent = next(m for m in slack.messages(channel) if m.get("thread_ts") in (None, m["ts"]) and run_id in m["text"])
    return [m["text"] for m in slack.thread(channel, parent["ts"])]


def click_confirm(app, slack, question: dict, action_id: str, user: str = "U0ALICE") -> dict:
    [button] = [e for b in question["blocks"] if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == action_id]
    name = f"click{time.monotonic_ns()}"
    payload = {
        "type": "block_actions", "api_app_id": "A0MODELBOT", "token": "deprecated-verification-token",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0EMULATOR"},
        "container": {"type": "message", "message_ts": "1.0", "channel_id": "C0CHURN", "is_ephemeral": True},
        "trigger_id": f"{time.time_ns()}.trigger", "team": {"id": "T0EMULATOR", "domain": "example"},
        "channel": {"id": "C0CHURN", "name": "ml"}, "state": {"values": {}},
        "response_url": slack.response_url(name),
        "actions": [{**button, "block_id": "b", "action_ts": f"{time.time():.6f}"}],
    }
    assert app.action(payload).status_code == 200
    return reply(slack, name)


def weights(endpoint: str) -> dict[str, float]:
    desc = boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName=endpoint)
    return {v["VariantName"]: v.get("CurrentWeight", 0.0) for v in desc["ProductionVariants"]}


def package(arn: str) -> dict:
    return boto3.client("sagemaker", region_name=REGION).describe_model_package(ModelPackageName=arn)


def task_log(airflow, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
    url = (f"{airflow.url}/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/"
           f"{task_id}/logs/{try_number}")
    return requests.get(url, params={"full_content": "true"}, headers={"Accept": "application/json"},
                        timeout=20).text


def settled(settings: Settings, dag_id: str, run_id: str) -> bool:
    jobs_pass(settings)
    services = Services.from_settings(settings, migrate=False)
    try:
        with services.store.session() as s:
            row = s.scalars(select(RunRecord).where(RunRecord.dag_id == dag_id, RunRecord.run_id == run_id)).first()
        return row is not None and row.settled
    finally:
        services.store.dispose()


def rollout_of(settings: Settings, run_id: str) -> Rollout | None:
    services = Services.from_settings(settings, migrate=False)
    try:
        with services.store.session() as s:
            return s.scalars(select(Rollout).where(Rollout.run_key == f"churn/{run_id}")).first()
    finally:
        services.store.dispose()


# Four Airflow runs, two of them one after the other, on a shared 2-core machine: Airflow's own retries of a
# task whose supervisor lost the API server under load take minutes, so the budget is generous.
@pytest.mark.timeout(2400)
def test_generated_pipelines_retrain_evaluate_deploy_and_keep_the_model_registry_in_step(
    pipeline_dags, airflow, aws, proxy, slack, flow_database_url, tmp_path, monkeypatch
):
    steps = dag_file.load()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", proxy.url)
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    create_endpoint("churn-prod", {"v41": 1.0})
    # Production: an Approved package whose model only ever learned from the first feature.
    production_model = {"features": ["tenure_z", "complaints_z"], "weights": [0.0, 1.0, 0.0]}
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key="churn/prod/model.tar.gz",
                                                      Body=steps.model_tarball(pickle.dumps(production_model)))
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_model_package_group(ModelPackageGroupName="churn")
    sm.create_model_package(ModelPackageGroupName="churn", ModelApprovalStatus="Approved", InferenceSpecification={
        "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/churn/prod/model.tar.gz"}],
        "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]})

    models = pipeline_dags
    env = app_env(slack=slack, moto_url=aws, database_url=flow_database_url, models_file=models,
                  AIRFLOW_URL=airflow.url, AWS_ENDPOINT_URL_SAGEMAKER=proxy.url)
    settings = Settings(_env_file=None, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_API_URL=slack.api_url,
                        DATABASE_URL=flow_database_url, MODELS_FILE=str(models), AIRFLOW_URL=airflow.url,
                        MODELBOT_JOB_INTERVAL_SECONDS=1)
    app = AppProcess(env, tmp_path / "app.log").start(timeout=120)  # a busy machine starts it slowly
    try:
        _, rid_churn = app.command("retrain churn", slack=slack)
        _, rid_fresh = app.command("retrain fresh", slack=slack, channel_id="C0FRESH")
        _, rid_broken = app.command("retrain broken", slack=slack, channel_id="C0BROKEN")
        run_a, run_fresh, run_broken = (run_id_of(slack, r) for r in (rid_churn, rid_fresh, rid_broken))
        for dag_id, run_id in (("churn_pipeline", run_a), ("fresh_pipeline", run_fresh),
                               ("broken_pipeline", run_broken)):
            wait_until(lambda: settled(settings, dag_id, run_id), timeout=900, interval=5,
                       message=f"{dag_id} run {run_id} to finish and be told")

        # -- churn, run A: evaluated against production on the same validation rows, deployed at weight 0.
        texts = thread_texts(slack, "C0CHURN", run_a)
        validation = pickle.loads(boto3.client("s3", region_name=REGION).get_object(
            Bucket=BUCKET, Key=f"churn/churn_pipeline/{run_a}/validation.pkl")["Body"].read())
        monkeypatch.syspath_prepend(str(ROOT / "dags" / "examples"))
        churn_model = importlib.import_module("churn_model")
        expected = steps.metric_value("auc", validation["churned"], churn_model.predict(
            production_model, validation.drop(columns=["churned"])))
        evaluation = next(t for t in texts if "*Evaluation*" in t)
        assert f"vs production *{expected:.4g}*" in evaluation, evaluation
        assert "better." in evaluation and "Verdict: *promote*" in evaluation
        # The production package predates schemas: said, not compared.
        assert "Request schema: not compared with production's: the production package" in evaluation
        deployed = next(t for t in texts if ":package:" in t)
        assert "Candidate `v42` is on endpoint `churn-prod` at weight 0, beside `v41`" in deployed
        arn_a = re.search(r"Model Registry: package `([^`]+)`", deployed).group(1)
        # The deploy's UpdateEndpoint: a new config keeping v41 as it was, v42 added at weight 0 ...
        [update] = [c for c in proxy.update_calls if c["EndpointName"] == "churn-prod"]
        config = sm.describe_endpoint_config(EndpointConfigName=update["EndpointConfigName"])
        assert {v["VariantName"]: v["InitialVariantWeight"] for v in config["ProductionVariants"]} == {
            "v41": 1.0, "v42": 0.0}
        # ... capturing requests and predictions, and the package names the candidate's schemas.
        assert config["DataCaptureConfig"]["DestinationS3Uri"] == f"s3://{BUCKET}/churn/capture"
        assert config["DataCaptureConfig"]["InitialSamplingPercentage"] == 100
        assert package(arn_a)["CustomerMetadataProperties"]["modelbot_schemas"] == (
            f"s3://{BUCKET}/churn/churn_pipeline/{run_a}/schemas.json")
        assert "DeleteEndpoint" not in proxy.operations
        # ... then the rollout took it from there: its first step (50%) is on the endpoint.
        assert weights("churn-prod") == {"v41": 0.5, "v42": 0.5}
        assert package(arn_a)["ModelApprovalStatus"] == "PendingManualApproval"
        assert package(arn_a)["ModelPackageVersion"] == 2
        started = rollout_of(settings, run_a)
        assert started is not None and started.candidate_variant == "v42" and started.stable_variant == "v41"
        assert packages.package_versions(Services.from_settings(settings, migrate=False).store,
                                         "churn").rolling_out.arn == arn_a

        # -- a first model: its endpoint is created with the candidate alone; its package is approved.
        fresh = thread_texts(slack, "C0FRESH", run_fresh)
        assert any("nothing in production to compare with" in t for t in fresh), fresh
        assert any("Endpoint `fresh-prod` was created with `v1` alone" in t for t in fresh), fresh
        assert weights("fresh-prod") == {"v1": 1.0}
        [fresh_package] = sm.list_model_packages(ModelPackageGroupName="fresh")["ModelPackageSummaryList"]
        assert fresh_package["ModelApprovalStatus"] == "Approved"

        # -- a broken module: preprocess fails at once, and says which function did what wrong.
        broken = thread_texts(slack, "C0BROKEN", run_broken)
        # (Try 1 here unless the busy machine's Airflow lost an earlier try; the module's failure is never retried.)
        assert any(re.match(r":x: Task `preprocess` failed on try \d and will not be retried\.", t) for t in broken)
        assert ("broken_model.preprocess(conf)['train'] has no label column 'churned' (columns: tenure_z, "
                "complaints_z)") in "".join(task_log(airflow, "broken_pipeline", run_broken, "preprocess", n)
                                            for n in (1, 2))
        # ... and the thread quotes it under the failure (the task's XCom modelbot_failure).
        assert any("> broken_model.preprocess(conf)['train'] has no label column 'churned'" in t for t in broken), \
            broken

        # -- rolled back by hand -> Rejected, with the reason.
        _, rid = app.command("rollback churn p99 latency up", slack=slack)
        click_confirm(app, slack, reply(slack, rid), "rollout_rollback_confirm")
        wait_until(lambda: rollout_of(settings, run_a).state == "rolled_back", timeout=30, message="the rollback")
        assert weights("churn-prod") == {"v41": 1.0, "v42": 0.0}
        results = jobs_pass(settings)
        assert results["model_registry_sync"].startswith("1 rejected"), results
        assert package(arn_a)["ModelApprovalStatus"] == "Rejected"
        assert package(arn_a)["ApprovalDescription"] == "modelbot: rolled back by <@U0ALICE>: p99 latency up"

        # -- run B: production is still the first package (A was rejected); promoted -> Approved.
        _, rid_b = app.command("retrain churn seed=7", slack=slack)
        run_b = run_id_of(slack, rid_b)
        wait_until(lambda: settled(settings, "churn_pipeline", run_b) and rollout_of(settings, run_b) is not None,
                   timeout=900, interval=5, message="run B to finish and its rollout to start")
        deployed_b = next(t for t in thread_texts(slack, "C0CHURN", run_b) if ":package:" in t)
        assert "Candidate `v43` is on endpoint `churn-prod` at weight 0, beside `v41`" in deployed_b
        arn_b = re.search(r"Model Registry: package `([^`]+)`", deployed_b).group(1)
        _, rid = app.command("promote churn --force release", slack=slack)
        click_confirm(app, slack, reply(slack, rid), "rollout_force_confirm")
        wait_until(lambda: jobs_pass(settings) and rollout_of(settings, run_b).state == "promoted", timeout=60,
                   interval=1, message="the forced promotion to bake and finish")
        jobs_pass(settings)
        assert package(arn_b)["ModelApprovalStatus"] == "Approved"
        assert package(arn_b)["ApprovalDescription"].startswith("modelbot: forced promotion of `v43`")
        assert package(arn_a)["ModelApprovalStatus"] == "Rejected"  # untouched by later passes
        versions = packages.package_versions(Services.from_settings(settings, migrate=False).store, "churn")
        assert versions.serving.arn == arn_b and versions.rolling_out is None
    finally:
        app.stop()
