"""One real Airflow 3.3.2 for the whole session (installed once, cached in .airflow-venv), shared by these tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.airflow.airflow_process import DAG_IDS, ensure_venv, start_secured_api, start_standalone
from sandbox.update_endpoint_proxy import SageMakerProxy
from tests.harness import ROOT

SECURED_USER, SECURED_PASSWORD = "modelbot", "s3cret-pass"
TOKEN_SECONDS = 6  # short on the secured api-server, so a token really expires during a test


HERE = Path(__file__).parent
_running: list = []  # the Airflow processes of this session, stopped as soon as the last test here is done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_here(item) -> bool:
    return item is not None and HERE in Path(str(item.fspath)).parents


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_here(item):
            item.add_marker(pytest.mark.airflow)


def pytest_runtest_teardown(item, nextitem):
    # Session-scoped, yet stopped once no test here follows: an idle Airflow still takes CPU from the rest of
    # the suite on a 2-core machine.
    if _is_here(item) and not _is_here(nextitem):
        for process in reversed(_running):
            process.stop()


@pytest.fixture(scope="session")
def airflow(moto_url, tmp_path_factory):
    """`airflow standalone` (all-admins shortcut on) with dags/model_lifecycle.py, boto3 pointed at moto."""
    if os.environ.get("MODELBOT_SKIP_AIRFLOW") == "1":
        pytest.skip("MODELBOT_SKIP_AIRFLOW=1: the real-Airflow tests are skipped")
    venv = ensure_venv()
    # Kept after the run (gitignored), so Airflow's own logs can be read when a test fails.
    homes = ROOT / ".airflow-home"
    for old in homes.glob("session-*") if homes.exists() else []:
        if not _alive(int(old.name.split("-", 1)[1])):  # another test run may be using its own right now
            shutil.rmtree(old, ignore_errors=True)
    workdir = homes / f"session-{os.getpid()}"
    # moto lacks UpdateEndpoint, which the DAG's deploy uses (it never deletes an endpoint): the proxy answers it.
    sagemaker = SageMakerProxy(moto_url).start()
    process = start_standalone(venv, workdir, moto_url, extra_env={"AWS_ENDPOINT_URL_SAGEMAKER": sagemaker.url})
    _running.append(process)
    try:
        process.wait_ready(timeout=240, dag_ids=DAG_IDS)
        yield process
    finally:
        process.stop()
        sagemaker.stop()


@pytest.fixture(scope="session")
def airflow_secured(airflow, tmp_path_factory):
    """A second api-server on the same Airflow with the all-admins shortcut off: username/password logins only."""
    api = start_secured_api(airflow, tmp_path_factory.mktemp("airflow-secured"), username=SECURED_USER,
                            password=SECURED_PASSWORD, jwt_seconds=TOKEN_SECONDS)
    _running.append(api)
    try:
        api.wait_ready(timeout=120)
        yield api
    finally:
        api.stop()


@pytest.fixture
def flow_database_url(tmp_path):
    """PostgreSQL when the run has one (CI does), else SQLite: the Airflow flow is too slow to run on both."""
    from tests.conftest import POSTGRES_URL, _fresh_postgres_database, _postgres_reachable

    if POSTGRES_URL and _postgres_reachable(POSTGRES_URL) is None:
        url, drop = _fresh_postgres_database(POSTGRES_URL)
        yield url
        drop()
    else:
        yield f"sqlite:///{tmp_path / 'modelbot.db'}"


def create_endpoint(endpoint: str = "churn-prod", variant: str = "v41") -> None:
    """The production endpoint the DAG's deploy task adds its candidate to, in moto (reset per test)."""
    import boto3

    sm = boto3.client("sagemaker", region_name="us-east-1")
    role = "arn:aws:iam::123456789012:role/sagemaker"
    sm.create_model(ModelName=f"{endpoint}-{variant}", ExecutionRoleArn=role,
                    PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/model:latest"})
    sm.create_endpoint_config(EndpointConfigName=f"{endpoint}-{variant}", ProductionVariants=[{
        "VariantName": variant, "ModelName": f"{endpoint}-{variant}", "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0}])
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=f"{endpoint}-{variant}")
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="modelbot-diagnostics")
