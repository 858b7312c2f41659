"""The generated DAG's steps (dags/modelbot_pipelines.py), called directly: real pandas/numpy, real boto3
against moto (S3, SageMaker, the Model Registry) with the UpdateEndpoint fake in front of SageMaker."""

from __future__ import annotations

import itertools
import json
import pickle

import boto3
import numpy as np
import pytest

from tests.endpoints import create_endpoint
from tests.pipelines.conftest import BUCKET, IMAGE, REGION, ROLE, first_feature_model, pipeline, \
    register_production, run_pipeline, weights


def s3_keys(prefix: str) -> list[str]:
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"][len(prefix):] for o in listed.get("Contents", []))


# ---------------------------------------------------------------- metrics

def test_metrics_match_their_definitions(steps):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 1)  # many ties
    pairs = [(a, b) for a, b in itertools.product(s[y == 1], s[y == 0])]
    brute_auc = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
    assert steps.metric_value("auc", y, s) == pytest.approx(brute_auc, abs=1e-12)
    pred = (s >= 0.5).astype(int)
    tp, fp, fn = ((pred == 1) & (y == 1)).sum(), ((pred == 1) & (y == 0)).sum(), ((pred == 0) & (y == 1)).sum()
    assert steps.metric_value("f1", y, s) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert steps.metric_value("accuracy", y, s) == pytest.approx((pred == y).mean())
    p = np.clip(s, 1e-15, 1 - 1e-15)
    assert steps.metric_value("logloss", y, s) == pytest.approx(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    t, v = rng.normal(size=50), rng.normal(size=50)
    assert steps.metric_value("rmse", t, v) == pytest.approx(np.sqrt(((t - v) ** 2).mean()))
    assert steps.metric_value("mae", t, v) == pytest.approx(np.abs(t - v).mean())
    assert steps.metric_value("r2", t, v) == pytest.approx(1 - ((t - v) ** 2).sum() / ((t - t.mean()) ** 2).sum())
    with pytest.raises(ValueError, match="only one class"):
        steps.metric_value("auc", np.ones(5), s[:5])
    with pytest.raises(ValueError, match="needs a 0/1 label"):
        steps.metric_value("auc", np.array([0, 1, 2]), s[:3])


def test_the_registry_and_the_dag_know_the_same_metrics(steps):
    from bot.registry import PIPELINE_METRICS

    assert PIPELINE_METRICS == {m: "maximize" if up else "minimize" for m, up in steps.HIGHER_IS_BETTER.items()}


@pytest.mark.parametrize("direction, cand, prod, min_imp, expected", [
    ("maximize", 0.90, None, 0.0, True), ("maximize", 0.90, 0.89, 0.0, True), ("maximize", 0.89, 0.89, 0.0, False),
    ("maximize", 0.90, 0.89, 0.02, False), ("minimize", 0.30, 0.35, 0.05, True), ("minimize", 0.36, 0.35, 0.0, False),
])
def test_promote_follows_direction_and_min_improvement(steps, direction, cand, prod, min_imp, expected):
    assert steps.decide(direction, cand, prod, min_imp) is expected


# ---------------------------------------------------------------- a model with an endpoint in production

def test_candidate_beats_production_on_the_same_data_and_joins_the_endpoint_at_weight_0(steps, modules,
                                                                                         pipeline_aws):
    create_endpoint("churn-prod", {"v41": 1.0})
    production_arn = register_production(steps, first_feature_model())
    p = pipeline(steps)
    data, trained, evaluation = run_pipeline(steps, p, "manual__1")

    # production is the Approved package's model, scored on the very validation rows the candidate was.
    validation = pickle.loads(boto3.client("s3", region_name=REGION).get_object(
        Bucket=BUCKET, Key="churn/churn_pipeline/manual__1/validation.pkl")["Body"].read())
    import churn_model

    expected = steps.metric_value("auc", validation["churned"], churn_model.predict(
        first_feature_model(), validation.drop(columns=["churned"])))
    assert evaluation["production"] == round(expected, 6)
    assert evaluation["metric"] == "auc" and evaluation["candidate"] > evaluation["production"]
    assert evaluation["promote"] is True
    assert evaluation["diagnostics_uri"] == f"s3://{BUCKET}/churn/churn_pipeline/manual__1/diagnostics.csv"
    assert s3_keys("churn/churn_pipeline/manual__1/") == [
        "diagnostics.csv", "evaluation.json", "model.pkl", "model.tar.gz", "schemas.json", "train.pkl",
        "validation.pkl"]
    report = json.loads(boto3.client("s3", region_name=REGION).get_object(
        Bucket=BUCKET, Key="churn/churn_pipeline/manual__1/evaluation.json")["Body"].read())
    assert report["production_model_package"] == production_arn
    assert set(report["candidate"]) == {"auc", "accuracy", "f1", "logloss"}

    sm = steps.aws_client("sagemaker", REGION)
    result = steps.step_deploy(p, {}, "manual__1", evaluation, trained, sm)
    assert result["endpoint"] == "churn-prod" and result["stable_variant"] == "v41"
    assert result["candidate_variant"] == "v42"
    assert weights() == {"v41": 1.0, "v42": 0.0}
    package = boto3.client("sagemaker", region_name=REGION).describe_model_package(
        ModelPackageName=result["model_package_arn"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["ModelPackageGroupName"] == "churn" and package["ModelPackageVersion"] == 2
    assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"].endswith("manual__1/evaluation.json")
    assert package["CustomerMetadataProperties"]["candidate"] == str(evaluation["candidate"])
    container = package["InferenceSpecification"]["Containers"][0]
    assert container == {"Image": IMAGE, "ModelDataUrl": trained["model_data_url"]}
    model = boto3.client("sagemaker", region_name=REGION).describe_model(
        ModelName=next(v["ModelName"] for v in _config_variants() if v["VariantName"] == "v42"))
    assert model["PrimaryContainer"]["ModelDataUrl"] == trained["model_data_url"]
    assert model["ExecutionRoleArn"] == "arn:aws:iam::123456789012:role/modelbot-test"  # the stable model's
    assert pipeline_aws.update_calls and "DeleteEndpoint" not in pipeline_aws.operations

    # A retried deploy finds its own package and variant: no second package, no third variant.
    again = steps.step_deploy(p, {}, "manual__1", evaluation, trained, sm)
    assert again == result
    assert weights() == {"v41": 1.0, "v42": 0.0}
    listed = boto3.client("sagemaker", region_name=REGION).list_model_packages(ModelPackageGroupName="churn")
    assert len(listed["ModelPackageSummaryList"]) == 2

    # After a rollback (v42 idle at 0) the next run's candidate is v43: every current variant is kept.
    _, trained2, evaluation2 = run_pipeline(steps, p, "manual__2", {"seed": "7"})
    result2 = steps.step_deploy(p, {}, "manual__2", evaluation2, trained2, sm)
    assert (result2["stable_variant"], result2["candidate_variant"]) == ("v41", "v43")
    assert weights() == {"v41": 1.0, "v42": 0.0, "v43": 0.0}


def _config_variants(endpoint: str = "churn-prod") -> list[dict]:
    sm = boto3.client("sagemaker", region_name=REGION)
    config = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    return sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]


def test_a_candidate_no_better_than_production_is_not_deployed(steps, modules, pipeline_aws):
    create_endpoint("churn-prod", {"v41": 1.0})
    p = pipeline(steps, min_improvement=0.5)  # an AUC gain of 0.5 is out of reach
    register_production(steps, first_feature_model())
    _, trained, evaluation = run_pipeline(steps, p, "manual__1")
    assert evaluation["promote"] is False and evaluation["production"] is not None
    with pytest.raises(steps.AirflowSkipException, match="not better than production"):
        steps.step_deploy(p, {}, "manual__1", evaluation, trained, steps.aws_client("sagemaker", REGION))
    assert weights() == {"v41": 1.0}


def test_a_first_model_creates_its_endpoint_alone_and_is_approved(steps, modules, pipeline_aws):
    p = pipeline(steps, endpoint="fresh-prod", model="fresh", dag_id="fresh_pipeline", execution_role=ROLE,
                 instance_type="ml.c5.large")
    _, trained, evaluation = run_pipeline(steps, p, "manual__1")
    assert evaluation["production"] is None and evaluation["promote"] is True
    result = steps.step_deploy(p, {}, "manual__1", evaluation, trained, steps.aws_client("sagemaker", REGION))
    assert result["created_endpoint"] is True
    assert result["stable_variant"] == result["candidate_variant"] == "v1"
    assert weights("fresh-prod") == {"v1": 1.0}
    assert _config_variants("fresh-prod")[0]["InstanceType"] == "ml.c5.large"
    package = boto3.client("sagemaker", region_name=REGION).describe_model_package(
        ModelPackageName=result["model_package_arn"])
    assert package["ModelApprovalStatus"] == "Approved" and "first model" in package["ApprovalDescription"]
    assert package["ModelPackageGroupName"] == "fresh"


def test_a_first_model_without_a_role_says_which_field_to_set(steps, modules, pipeline_aws):
    p = pipeline(steps, endpoint="fresh-prod", model="fresh", dag_id="fresh_pipeline")
    _, trained, evaluation = run_pipeline(steps, p, "manual__1")
    with pytest.raises(steps.DefinitionError, match="set pipeline.execution_role"):
        steps.step_deploy(p, {}, "manual__1", evaluation, trained, steps.aws_client("sagemaker", REGION))
    assert "CreateEndpoint" not in pipeline_aws.operations


# ---------------------------------------------------------------- broken modules


BROKEN = {
    "missing_predict": ("""
        import pandas as pd
        def preprocess(conf): return {}
        def train(frame, conf): return {}
     """, "broken.predict is missing: define predict(model, features) -> sequence of numbers"),
    "wrong_arity": ("""
        def preprocess(): return {}
        def train(frame, conf): return {}
        def predict(model, features): return []
     """, "broken.preprocess() cannot be called as preprocess(conf)"),
    "returns_list": ("""
        def preprocess(conf): return [1, 2]
        def train(frame, conf): return {}
        def predict(model, features): return []
     """, "broken.preprocess(conf) must return {'train': DataFrame, 'validation': DataFrame}; it returned list"),
    "no_validation": ("""
        import pandas as pd
        def preprocess(conf): return {"train": pd.DataFrame({"x": [1.0], "churned": [1]})}
        def train(frame, conf): return {}
        def predict(model, features): return []
     """, "broken.preprocess(conf) returned no 'validation'"),
    "no_label": ("""
        import pandas as pd
        def preprocess(conf):
            f = pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]})
            return {"train": f, "validation": f}
        def train(frame, conf): return {}
        def predict(model, features): return []
     """, "broken.preprocess(conf)['train'] has no label column 'churned' (columns: x, y)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_modules_fail_preprocess_naming_the_function(steps, modules, case):
    source, message = BROKEN[case]
    modules("broken", source)
    p = pipeline(steps, module="broken")
    with pytest.raises(steps.DefinitionError) as err:
        steps.step_preprocess(p, {}, "manual__1", steps.MemoryArtifacts())
    assert message in str(err.value)


def _frames_module(train_body: str, predict_body: str) -> str:
    return f"""
        import pandas as pd
        def preprocess(conf):
            f = pd.DataFrame({{"x": [0.1, 0.9, 0.2, 0.8], "churned": [0, 1, 0, 1]}})
            return {{"train": f, "validation": f}}
        def train(frame, conf):
            {train_body}
        def predict(model, features):
            {predict_body}
    """


@pytest.mark.parametrize("train_body, predict_body, message", [
    ("return None", "return [0.1]", "broken.train(frame, conf) returned None; it must return the trained model"),
    ("return lambda x: x", "return [0.1]", "broken.train(frame, conf) returned a function that cannot be pickled"),
    ("return 1", "return [0.1, 0.2]", "broken.predict(model, features) on the candidate model returned 2 values for "
                                      "4 rows"),
    ("return 1", "return 'abc'", "broken.predict(model, features) on the candidate model returned str"),
    ("return 1", "return [float('nan')] * 4", "returned 4 NaN or infinite values"),
    ("return 1", "return [[0.1, 0.9]] * 4", "returned an array of shape (4, 2); it must return one number per row"),
])
def test_broken_train_or_predict_fail_with_what_was_wrong(steps, modules, train_body, predict_body, message):
    modules("broken", _frames_module(train_body, predict_body))
    p = pipeline(steps, module="broken", label="churned")
    artifacts = steps.MemoryArtifacts()
    with pytest.raises(steps.DefinitionError) as err:
        data = steps.step_preprocess(p, {}, "r", artifacts)
        trained = steps.step_train(p, {}, "r", data, artifacts)
        steps.step_evaluate(p, "r", data, trained, artifacts, lambda: None)
    assert message in str(err.value)


def test_a_module_that_cannot_be_imported_says_so(steps, modules):
    modules("broken", "import not_installed_anywhere\n")
    with pytest.raises(steps.DefinitionError, match="module 'broken' could not be imported on this worker: "
                                                    "ModuleNotFoundError"):
        steps.step_preprocess(pipeline(steps, module="broken"), {}, "r", steps.MemoryArtifacts())


# ---------------------------------------------------------------- the models file, as the DAG reads it

def test_the_dag_reads_the_models_file(steps, tmp_path):
    from tests.pipelines.conftest import PIPELINE_TOML

    path = tmp_path / "models.toml"
    path.write_text(PIPELINE_TOML + '\n[models.plain]\nchannel = "C1"\n')
    [p] = steps.load_pipelines(path)
    assert (p.model, p.dag_id, p.metric, p.region, p.schedule, p.min_improvement) == (
        "churn", "churn_pipeline", "auc", "us-east-1", None, 0.0)
    assert p.run_prefix("manual__1") == f"s3://{BUCKET}/churn/churn_pipeline/manual__1"


@pytest.mark.parametrize("change, message", [
    ('module = "churn_model"', "field 'pipeline.module': is required"),
    ('artifacts = "s3://ml-artifacts/churn"', "field 'pipeline.artifacts': is required"),
    ('label = "churned"', "field 'pipeline.label': is required"),
])
def test_the_dag_names_file_model_and_field(steps, tmp_path, change, message):
    from tests.pipelines.conftest import PIPELINE_TOML

    path = tmp_path / "models.toml"
    path.write_text(PIPELINE_TOML.replace(change, ""))
    with pytest.raises(steps.PipelineConfigError) as err:
        steps.load_pipelines(path)
    assert f"{path}: model 'churn', {message}" in str(err.value)
