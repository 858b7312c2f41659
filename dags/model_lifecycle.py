"""Example model lifecycle DAG for modelbot: preprocess -> train -> evaluate -> deploy.

It follows modelbot's XCom contract (README: "What the DAG must return"):
- `evaluate` returns {"metric", "candidate", "production", "promote", "diagnostics_uri" (optional)};
- `deploy` puts the candidate on the SageMaker endpoint at weight 0 and returns
  {"endpoint", "stable_variant", "candidate_variant"}; modelbot then rolls it out gradually.

The model is a deliberately tiny logistic regression on synthetic data, in plain Python, so the DAG runs in
seconds anywhere; replace preprocess/train/evaluate with your own and keep what they return. One DAG is
built per entry of LIFECYCLES: its key is the `dag_id` to put in modelbot's models file.

Run conf (from `/model retrain <model> key=value ...`; every value arrives as a string):
  rows=600             how many synthetic rows to generate
  epochs=200           training epochs
  min_improvement=0    how much better than production the candidate must be to be promoted
  candidate_variant=   name of the new variant (default: the highest number the endpoint ever had + 1, e.g.
                       v43 after v41 and v42 were used; a name the endpoint had before is refused)
  fail=<task>          make that task fail at once, without retries, to rehearse a failure thread
Environment: DIAGNOSTICS_BUCKET (optional) is an S3 bucket for the y_true/y_pred CSV behind the
diagnostic plots; AWS_* configure boto3 as usual (AWS_ENDPOINT_URL for a local emulator such as moto).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import random
import re
from datetime import timedelta

import pendulum
from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

# dag_id -> the model's SageMaker endpoint and the metric its evaluation reports.
LIFECYCLES = {
    "churn_lifecycle": {"endpoint": "churn-prod", "metric": "auc", "region": "us-east-1"},
    "fraud_lifecycle": {"endpoint": "fraud-prod", "metric": "logloss", "region": "us-east-1"},
}
HIGHER_IS_BETTER = {"auc": True, "logloss": False}


def _conf() -> dict:
    return dict(get_current_context()["dag_run"].conf or {})


def _maybe_fail(task_id: str) -> None:
    if _conf().get("fail") == task_id:
        raise AirflowFailException(f"failing on purpose: the run's conf has fail={task_id}")


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-35.0, min(35.0, z))))


def _predict(weights: list[float], row: list[float]) -> float:
    return _sigmoid(weights[0] + sum(w * x for w, x in zip(weights[1:], row[:-1])))


def auc(y_true: list[int], y_score: list[float]) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    pairs = sorted(zip(y_score, y_true))
    rank_sum, i, n_pos = 0.0, 0, sum(y_true)
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + 1 + j) / 2
        rank_sum += avg_rank * sum(label for _, label in pairs[i:j])
        i = j
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def logloss(y_true: list[int], y_score: list[float]) -> float:
    eps = 1e-12
    return -sum(y * math.log(max(p, eps)) + (1 - y) * math.log(max(1 - p, eps)) for y, p in zip(y_true, y_score)) / len(y_true)


METRICS = {"auc": auc, "logloss": logloss}


def _variant_history(sm, cloudwatch, endpoint: str) -> set[str]:
    """Every variant name the endpoint has had: in any endpoint config made for it (their names carry the
    endpoint's), and in CloudWatch (15 months of per-variant metrics, configs deleted by hand included).
    A name is never used twice: CloudWatch's per-variant history would mix two models."""
    names: set[str] = set()
    for page in sm.get_paginator("list_endpoint_configs").paginate(NameContains=endpoint):
        for summary in page.get("EndpointConfigs", []):
            config = sm.describe_endpoint_config(EndpointConfigName=summary["EndpointConfigName"])
            names.update(v["VariantName"] for v in config.get("ProductionVariants", []))
    try:
        for page in cloudwatch.get_paginator("list_metrics").paginate(
                Namespace="AWS/SageMaker", MetricName="Invocations",
                Dimensions=[{"Name": "EndpointName", "Value": endpoint}]):
            for metric in page.get("Metrics", []):
                names.update(d["Value"] for d in metric.get("Dimensions", []) if d["Name"] == "VariantName")
    except Exception as exc:  # no cloudwatch:ListMetrics: the endpoint configs still name what was used
        print(f"CloudWatch's variant names of {endpoint} not read: {exc}")
    return names


def _next_variant(stable: str, run_id: str, used: set[str]) -> str:
    """The next of stable's series after every name used (v41, v42 used -> v43); never a name used before."""
    match = re.match(r"^(.*?)(\d+)$", stable)
    if match:
        prefix = match.group(1)
        numbers = [int(m.group(1)) for n in used | {stable} if (m := re.match(rf"^{re.escape(prefix)}(\d+)$", n))]
        return f"{prefix}{max(numbers) + 1}"
    return f"{stable}-{hashlib.sha1(run_id.encode()).hexdigest()[:6]}"


def _move_endpoint(sm, endpoint: str, config_name: str) -> None:
    """UpdateEndpoint, and nothing else: an endpoint is never deleted or recreated here, whatever answers.

    (AWS_ENDPOINT_URL may point at a VPC or FIPS endpoint of real AWS, so "an emulator that lacks
    UpdateEndpoint" cannot be told apart from production; a local emulator gets UpdateEndpoint from
    sandbox/update_endpoint_proxy.py via AWS_ENDPOINT_URL_SAGEMAKER.)"""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config_name)
    except (ClientError, BotoCoreError) as exc:
        raise AirflowFailException(
            f"SageMaker did not move endpoint {endpoint} to config {config_name} (UpdateEndpoint failed: {exc}). "
            f"The endpoint was left as it was, still serving its old config; nothing was deleted. The new "
            f"config {config_name} exists: retry the task once SageMaker answers, or delete that config."
        ) from None


def build_lifecycle(dag_id: str, *, endpoint: str, metric: str, region: str):
    @dag(
        dag_id=dag_id,
        schedule=None,  # modelbot triggers it; add a schedule too if you like, those runs get threads as well
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,  # two deploys racing on one endpoint would leave it in an unknown state
        default_args={"retries": 1, "retry_delay": timedelta(minutes=2)},
        tags=["modelbot"],
        doc_md=__doc__,
    )
    def lifecycle():
        @task
        def preprocess() -> dict:
            _maybe_fail("preprocess")
            conf = _conf()
            run_id = get_current_context()["dag_run"].run_id
            rng = random.Random(conf.get("seed") or run_id)
            rows = []
            for _ in range(int(conf.get("rows", 600))):
                x1, x2 = rng.gauss(0, 1), rng.gauss(0, 1)
                y = 1 if rng.random() < _sigmoid(1.5 * x1 + 1.0 * x2 - 0.3) else 0
                rows.append([round(x1, 5), round(x2, 5), y])
            cut = len(rows) * 2 // 3
            return {"train": rows[:cut], "test": rows[cut:]}

        @task
        def train(data: dict) -> list[float]:
            _maybe_fail("train")
            epochs, lr = int(_conf().get("epochs", 200)), 0.5
            w = [0.0, 0.0, 0.0]
            rows = data["train"]
            for _ in range(epochs):
                grad = [0.0, 0.0, 0.0]
                for row in rows:
                    err = _predict(w, row) - row[-1]
                    grad[0] += err
                    grad[1] += err * row[0]
                    grad[2] += err * row[1]
                w = [wi - lr * g / len(rows) for wi, g in zip(w, grad)]
            return w

        @task
        def evaluate(data: dict, weights: list[float]) -> dict:
            _maybe_fail("evaluate")
            conf, ctx = _conf(), get_current_context()
            test = data["test"]
            y_true = [int(r[-1]) for r in test]
            cand_scores = [_predict(weights, r) for r in test]
            # "Production" here is the model being replaced: it only ever learned from the first feature.
            prod_scores = [_predict([0.0, 1.0, 0.0], r) for r in test]
            score = METRICS[metric]
            candidate, production = score(y_true, cand_scores), score(y_true, prod_scores)
            gain = candidate - production if HIGHER_IS_BETTER[metric] else production - candidate
            result = {
                "metric": metric,
                "candidate": round(candidate, 6),
                "production": round(production, 6),
                "promote": gain > float(conf.get("min_improvement", 0)),
            }
            bucket = os.environ.get("DIAGNOSTICS_BUCKET")
            if bucket:
                import boto3

                buf = io.StringIO()
                writer = csv.writer(buf)
                writer.writerow(["y_true", "y_pred"])
                writer.writerows(zip(y_true, (round(p, 6) for p in cand_scores)))
                key = f"{dag_id}/{ctx['dag_run'].run_id}/diagnostics.csv"
                boto3.client("s3", region_name=region).put_object(Bucket=bucket, Key=key, Body=buf.getvalue().encode())
                result["diagnostics_uri"] = f"s3://{bucket}/{key}"
            return result

        @task
        def deploy(evaluation: dict, weights: list[float]) -> dict:
            """Adds the candidate to the endpoint at weight 0; modelbot shifts traffic to it step by step."""
            _maybe_fail("deploy")
            if not evaluation["promote"]:
                raise AirflowSkipException("the candidate is not better than production; nothing to deploy")
            import boto3

            run_id = get_current_context()["dag_run"].run_id
            sm = boto3.client("sagemaker", region_name=region)
            current = sm.describe_endpoint(EndpointName=endpoint)
            weights_now = {v["VariantName"]: float(v.get("CurrentWeight", 0.0)) for v in current["ProductionVariants"]}
            config = sm.describe_endpoint_config(EndpointConfigName=current["EndpointConfigName"])
            variants = config["ProductionVariants"]
            suffix = hashlib.sha1(run_id.encode()).hexdigest()[:8]
            mine = next((v["VariantName"] for v in variants if v.get("ModelName", "").endswith(f"-{suffix}")), None)
            if mine is not None and len(weights_now) > 1:
                # A retry after the endpoint was already updated: this run's candidate is in place.
                stable = max((v for v in weights_now if v != mine), key=weights_now.get)
                return {"endpoint": endpoint, "stable_variant": stable, "candidate_variant": mine}
            stable = max(weights_now, key=weights_now.get)
            used = set(weights_now) | _variant_history(sm, boto3.client("cloudwatch", region_name=region), endpoint)
            wanted = _conf().get("candidate_variant")
            if wanted and wanted in used:
                raise AirflowFailException(f"endpoint {endpoint} had a variant named {wanted} before; a name is "
                                           "never used twice: name another with candidate_variant=NAME")
            candidate = wanted or _next_variant(stable, run_id, used)
            stable_entry = next(v for v in variants if v["VariantName"] == stable)
            stable_model = sm.describe_model(ModelName=stable_entry["ModelName"])
            model_name = f"{endpoint}-{candidate}-{suffix}"
            container = dict(stable_model["PrimaryContainer"])
            # A real pipeline points ModelDataUrl at the artifact `train` uploaded; this toy model fits in env.
            container["Environment"] = {**container.get("Environment", {}), "MODEL_WEIGHTS": json.dumps(weights)}
            sm.create_model(ModelName=model_name, PrimaryContainer=container,
                            ExecutionRoleArn=stable_model["ExecutionRoleArn"])
            new_variants = [
                {k: v[k] for k in ("VariantName", "ModelName", "InstanceType", "InitialInstanceCount") if k in v}
                | {"InitialVariantWeight": weights_now.get(v["VariantName"], 0.0)}
                for v in variants
            ]
            new_variants.append(
                {k: stable_entry[k] for k in ("InstanceType", "InitialInstanceCount") if k in stable_entry}
                | {"VariantName": candidate, "ModelName": model_name, "InitialVariantWeight": 0.0}
            )
            config_name = f"{endpoint}-{candidate}-{suffix}"
            sm.create_endpoint_config(EndpointConfigName=config_name, ProductionVariants=new_variants)
            _move_endpoint(sm, endpoint, config_name)
            sm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig={"Delay": 15, "MaxAttempts": 120})
            return {"endpoint": endpoint, "stable_variant": stable, "candidate_variant": candidate}

        data = preprocess()
        weights = train(data)
        evaluation = evaluate(data, weights)
        deploy(evaluation, weights)

    return lifecycle()


for _dag_id, _spec in LIFECYCLES.items():
    globals()[_dag_id] = build_lifecycle(_dag_id, **_spec)
