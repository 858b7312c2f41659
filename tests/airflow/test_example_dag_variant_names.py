"""The example DAG (dags/model_lifecycle.py) never names a candidate after a variant the endpoint had before
(issue 21, item 17): after a rolled-back v42 is removed, the next is v43, also when only CloudWatch remembers.

Its helpers run in Airflow's own venv (the file imports airflow.sdk), against moto, without an Airflow server.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import boto3

from tests.airflow.airflow_process import ensure_venv
from tests.endpoints import ROLE, create_endpoint

ROOT = Path(__file__).resolve().parents[2]

NAMES = """
import sys
sys.path.insert(0, "dags")
import boto3, model_lifecycle
sm = boto3.client("sagemaker", region_name="us-east-1")
cw = boto3.client("cloudwatch", region_name="us-east-1")
used = {"v41"} | model_lifecycle._variant_history(sm, cw, "churn-prod")
print("RESULT", sorted(used), model_lifecycle._next_variant("v41", "run", used))
"""


def test_the_next_candidate_is_never_a_name_the_endpoint_had(aws):
    sm = boto3.client("sagemaker", region_name="us-east-1")
    create_endpoint("churn-prod", {"v41": 1.0})  # serving v41 alone again
    # v42 was deployed, rolled back and retired: only its endpoint config remembers it ...
    sm.create_model(ModelName="churn-prod-v42-abc", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "i"})
    sm.create_endpoint_config(EndpointConfigName="churn-prod-v42-abc", ProductionVariants=[
        {"VariantName": v, "ModelName": m, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large",
         "InitialVariantWeight": w} for v, m, w in (("v41", "churn-prod-v41", 1.0), ("v42", "churn-prod-v42-abc", 0.0))])
    # ... and v47's config was deleted by hand, but CloudWatch still has its metrics.
    boto3.client("cloudwatch", region_name="us-east-1").put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "Invocations", "Value": 1.0, "Dimensions": [
            {"Name": "EndpointName", "Value": "churn-prod"}, {"Name": "VariantName", "Value": "v47"}]}])
    env = {**os.environ, "AWS_ENDPOINT_URL": aws}
    out = subprocess.run([str(ensure_venv() / "bin" / "python"), "-c", NAMES], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=180)
    result = out.stdout[out.stdout.find("RESULT "):].strip() if "RESULT " in out.stdout else (out.stdout, out.stderr)
    assert result == "RESULT ['v41', 'v42', 'v47'] v48", result
