"""The example DAG's deploy when UpdateEndpoint fails: the task fails and says so; the endpoint is never deleted.

moto answers UpdateEndpoint with an error (it does not implement it), exactly the answer that used to make the
DAG delete and recreate the endpoint when AWS_ENDPOINT_URL was set; a VPC or FIPS endpoint of real AWS sets it too.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import boto3

from tests.airflow.airflow_process import ensure_venv
from tests.endpoints import create_endpoint

ROOT = Path(__file__).resolve().parents[2]

MOVE = """
import sys
sys.path.insert(0, "dags")
import boto3, model_lifecycle
sm = boto3.client("sagemaker", region_name="us-east-1")
try:
    model_lifecycle._move_endpoint(sm, "churn-prod", "churn-prod-config-2")
except Exception as exc:
    print("RESULT", type(exc).__name__, exc)
"""


def test_update_endpoint_failing_fails_the_task_and_leaves_the_endpoint(aws):
    create_endpoint("churn-prod", {"v41": 1.0})
    create_endpoint("churn-staging", {"v42": 1.0}, config_name="churn-prod-config-2")
    venv = ensure_venv()
    env = {**os.environ, "AWS_ENDPOINT_URL": aws}
    env.pop("AWS_ENDPOINT_URL_SAGEMAKER", None)
    out = subprocess.run([str(venv / "bin" / "python"), "-c", MOVE], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=180)
    result = out.stdout[out.stdout.find("RESULT "):] if "RESULT " in out.stdout else (out.stdout, out.stderr)
    assert result.startswith("RESULT AirflowFailException SageMaker did not move endpoint churn-prod"), result
    assert "nothing was deleted" in result
    desc = boto3.client("sagemaker", region_name="us-east-1").describe_endpoint(EndpointName="churn-prod")
    assert desc["EndpointConfigName"] == "churn-prod-config-1"
    assert [v["VariantName"] for v in desc["ProductionVariants"]] == ["v41"]
