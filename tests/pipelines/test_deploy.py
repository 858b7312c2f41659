"""The generated DAG's deploy on moto: data capture on the new endpoint config (new, kept, overridden), and the
guards of issue 21: no candidate into a split endpoint (item 2), production loaded only from the model's own
artifacts (item 11), never a variant name the endpoint had before (item 17)."""

from __future__ import annotations

import pickle

import boto3
import pytest

from tests.endpoints import ROLE as ENDPOINT_ROLE
from tests.endpoints import create_endpoint
from tests.pipelines.conftest import BUCKET, REGION, config_of, first_feature_model, pipeline, run_pipeline, \
    weights

CAPTURE_DEFAULT = {
    "EnableCapture": True, "InitialSamplingPercentage": 100,
    "DestinationS3Uri": f"s3://{BUCKET}/churn/capture",
    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"], "CsvContentTypes": ["text/csv"]},
}


def deploy(steps, p, run_id: str = "manual__1", conf: dict | None = None) -> dict:
    _, trained, evaluation = run_pipeline(steps, p, run_id, conf)
    return steps.step_deploy(p, conf or {}, run_id, evaluation, trained, steps.aws_client("sagemaker", REGION),
                             steps.aws_client("cloudwatch", REGION))


def endpoint_with_capture(capture: dict) -> None:
    """churn-prod serving v41 from a config that already captures (set up by hand, say, with a KMS key)."""
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_model(ModelName="churn-prod-v41", ExecutionRoleArn=ENDPOINT_ROLE, PrimaryContainer={"Image": "i"})
    sm.create_endpoint_config(EndpointConfigName="churn-prod-captured", DataCaptureConfig=capture,
                              ProductionVariants=[{"VariantName": "v41", "ModelName": "churn-prod-v41",
                                                   "InitialInstanceCount": 1, "InstanceType": "ml.m5.large",
                                                   "InitialVariantWeight": 1.0}])
    sm.create_endpoint(EndpointName="churn-prod", EndpointConfigName="churn-prod-captured")


# ---------------------------------------------------------------- data capture

def test_the_new_endpoint_config_captures_requests_and_predictions(steps, modules, pipeline_aws):
    create_endpoint("churn-prod", {"v41": 1.0})
    result = deploy(steps, pipeline(steps))
    assert result["candidate_variant"] == "v42"
    config = config_of()
    assert config["DataCaptureConfig"] == CAPTURE_DEFAULT
    assert {v["VariantName"]: v["InitialVariantWeight"] for v in config["ProductionVariants"]} == {
        "v41": 1.0, "v42": 0.0}


def test_capture_percent_and_capture_uri_from_the_models_file(steps, modules, pipeline_aws):
    create_endpoint("churn-prod", {"v41": 1.0})
    p = pipeline(steps, capture_percent=25, capture_uri="s3://ml-capture/churn",
                 capture_set=frozenset({"capture_percent", "capture_uri"}))
    deploy(steps, p)
    capture = config_of()["DataCaptureConfig"]
    assert (capture["InitialSamplingPercentage"], capture["DestinationS3Uri"]) == (25, "s3://ml-capture/churn")


def test_a_first_model_captures_too_and_capture_percent_0_turns_it_off(steps, modules, pipeline_aws):
    fresh = dict(endpoint="fresh-prod", model="fresh", dag_id="fresh_pipeline",
                 execution_role="arn:aws:iam::123456789012:role/sagemaker")
    deploy(steps, pipeline(steps, **fresh))
    assert config_of("fresh-prod")["DataCaptureConfig"]["DestinationS3Uri"] == f"s3://{BUCKET}/churn/capture"
    off = pipeline(steps, **{**fresh, "endpoint": "quiet-prod", "model": "quiet", "dag_id": "quiet_pipeline"},
                   capture_percent=0,
                   capture_set=frozenset({"capture_percent"}))
    deploy(steps, off)
    assert not config_of("quiet-prod").get("DataCaptureConfig")  # moto echoes {} for none


def test_an_existing_capture_is_kept_except_what_the_models_file_sets(steps, modules, pipeline_aws):
    existing = {"EnableCapture": True, "InitialSamplingPercentage": 20, "DestinationS3Uri": "s3://audit/churn",
                "KmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/abc",
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]}
    endpoint_with_capture(existing)
    deploy(steps, pipeline(steps))  # the models file says nothing about capture: all of it kept
    assert config_of()["DataCaptureConfig"] == existing

    # capture_percent set in the models file: that one setting changes; the destination and the key stay.
    deploy(steps, pipeline(steps, capture_percent=5, capture_set=frozenset({"capture_percent"})), "manual__2")
    assert config_of()["DataCaptureConfig"] == {**existing, "InitialSamplingPercentage": 5}


# ---------------------------------------------------------------- issue 21, item 2: no third variant in a split

def test_a_candidate_never_joins_an_endpoint_whose_traffic_is_split(steps, modules, pipeline_aws):
    create_endpoint("churn-prod", {"v41": 0.5, "v42": 0.5})  # a rollout at 50%
    p = pipeline(steps)
    _, trained, evaluation = run_pipeline(steps, p, "manual__1")
    error = None
    try:
        steps.step_deploy(p, {}, "manual__1", evaluation, trained, steps.aws_client("sagemaker", REGION))
    except Exception as exc:  # noqa: BLE001  (what it is is asserted below, after what was left as it was)
        error = exc
    assert weights() == {"v41": 0.5, "v42": 0.5}  # no v43 beside them
    assert not pipeline_aws.update_calls
    assert isinstance(error, steps.Unretryable), error
    assert str(error).startswith("endpoint churn-prod splits its traffic (v41 50%, v42 50%): a rollout is in "
                                 "progress, and a candidate added now would be a third variant in a split that no "
                                 "rollout judges. Nothing was deployed.")
    listed = boto3.client("sagemaker", region_name=REGION).list_model_packages(ModelPackageGroupName="churn")
    assert listed["ModelPackageSummaryList"] == []  # nothing registered either


def test_the_dag_task_fails_at_once_and_tells_modelbot_why(steps, monkeypatch):
    """In a task, what no retry fixes is an AirflowFailException, and its reason is pushed for the run's thread."""
    pushed = []

    class Ti:
        def xcom_push(self, key, value):
            pushed.append((key, value))

    monkeypatch.setattr(steps, "get_current_context", lambda: {"ti": Ti()}, raising=False)

    def refuse():
        steps.refuse_split("churn-prod", {"v41": 0.9, "v42": 0.1})

    with pytest.raises(steps.AirflowFailException, match="splits its traffic"):
        steps._run_step(refuse)
    assert pushed[0][0] == "modelbot_failure" and pushed[0][1].startswith("endpoint churn-prod splits its traffic")

    def throttled():
        raise RuntimeError("SageMaker did not describe endpoint 'churn-prod': Rate exceeded")

    with pytest.raises(RuntimeError):  # retried by Airflow, still told
        steps._run_step(throttled)
    assert pushed[1] == ("modelbot_failure", "RuntimeError: SageMaker did not describe endpoint 'churn-prod': "
                                             "Rate exceeded")


# ---------------------------------------------------------------- issue 21, item 11: only its own artifacts

class Payload:
    """What a package pointing outside the model's artifacts could hold: unpickling it runs code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_production_is_unpickled_only_from_the_models_own_artifacts(steps, modules, pipeline_aws, tmp_path):
    create_endpoint("churn-prod", {"v41": 1.0})
    marker = tmp_path / "unpickled"
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="someone-else")
    s3.put_object(Bucket="someone-else", Key="model.tar.gz", Body=steps.model_tarball(pickle.dumps(Payload(str(marker)))))
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_model_package_group(ModelPackageGroupName="churn")
    arn = sm.create_model_package(
        ModelPackageGroupName="churn", ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": "i", "ModelDataUrl": "s3://someone-else/model.tar.gz"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
    )["ModelPackageArn"]
    p = pipeline(steps)
    with pytest.raises(Exception) as error:
        run_pipeline(steps, p, "manual__1")
    assert not marker.exists(), "the foreign pickle was loaded"
    assert isinstance(error.value, steps.Unretryable), error.value
    assert str(error.value).startswith(
        f"the production package {arn} names model data at s3://someone-else/model.tar.gz, outside this model's "
        f"artifacts (s3://{BUCKET}/churn/); the pipeline unpickles only what it wrote there")

    # s3://ml-artifacts/churn-other/ is not under s3://ml-artifacts/churn/ either.
    assert not steps.inside("s3://ml-artifacts/churn-other/model.tar.gz", "s3://ml-artifacts/churn")
    assert steps.inside("s3://ml-artifacts/churn/x/model.tar.gz", "s3://ml-artifacts/churn/")


# ---------------------------------------------------------------- issue 21, item 17: never a name used before

def test_a_removed_variants_name_is_not_used_again(steps, modules, pipeline_aws):
    """v42 was deployed, rolled back and retired: the endpoint serves v41 alone again. The next is v43."""
    sm = boto3.client("sagemaker", region_name=REGION)
    create_endpoint("churn-prod", {"v41": 1.0})
    sm.create_model(ModelName="churn-prod-v42", ExecutionRoleArn=ENDPOINT_ROLE, PrimaryContainer={"Image": "i"})
    sm.create_endpoint_config(EndpointConfigName="churn-prod-v42-1a2b3c4d", ProductionVariants=[
        {"VariantName": name, "ModelName": f"churn-prod-{name}", "InitialInstanceCount": 1,
         "InstanceType": "ml.m5.large", "InitialVariantWeight": w} for name, w in (("v41", 1.0), ("v42", 0.0))])
    assert weights() == {"v41": 1.0}
    result = deploy(steps, pipeline(steps))
    assert result["candidate_variant"] == "v43"
    assert weights() == {"v41": 1.0, "v43": 0.0}


def test_cloudwatch_remembers_names_whose_configs_were_deleted(steps, modules, pipeline_aws):
    create_endpoint("churn-prod", {"v41": 1.0})
    boto3.client("cloudwatch", region_name=REGION).put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "Invocations", "Value": 3.0, "Dimensions": [
            {"Name": "EndpointName", "Value": "churn-prod"}, {"Name": "VariantName", "Value": "v57"}]}])
    assert deploy(steps, pipeline(steps))["candidate_variant"] == "v58"


def test_a_name_given_in_the_conf_is_refused_when_the_endpoint_had_it(steps, modules, pipeline_aws):
    create_endpoint("churn-prod", {"v41": 1.0})
    boto3.client("cloudwatch", region_name=REGION).put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "Invocations", "Value": 3.0, "Dimensions": [
            {"Name": "EndpointName", "Value": "churn-prod"}, {"Name": "VariantName", "Value": "blue"}]}])
    with pytest.raises(steps.Unretryable, match="endpoint churn-prod had a variant named blue before "
                                                "\\(CloudWatch's metrics of the endpoint\\); a name is never used twice"):
        deploy(steps, pipeline(steps), conf={"candidate_variant": "blue"})
    assert weights() == {"v41": 1.0}
    assert deploy(steps, pipeline(steps), "manual__2", conf={"candidate_variant": "green"})["candidate_variant"] == "green"


def test_a_retried_deploy_keeps_its_own_name(steps, modules, pipeline_aws):
    """The first try made its model and config, then UpdateEndpoint failed: the retry is still v42, not v43."""
    create_endpoint("churn-prod", {"v41": 1.0})
    p = pipeline(steps)
    _, trained, evaluation = run_pipeline(steps, p, "manual__1")
    sm, cw = steps.aws_client("sagemaker", REGION), steps.aws_client("cloudwatch", REGION)
    pipeline_aws.fail_next("UpdateEndpoint", "ValidationException", "Cannot update in-progress endpoint")
    with pytest.raises(RuntimeError, match="SageMaker did not update endpoint 'churn-prod'"):
        steps.step_deploy(p, {}, "manual__1", evaluation, trained, sm, cw)
    pipeline_aws.reset()
    result = steps.step_deploy(p, {}, "manual__1", evaluation, trained, sm, cw)
    assert result["candidate_variant"] == "v42" and weights() == {"v41": 1.0, "v42": 0.0}


def test_first_production_model_package_is_its_own_groups(steps, modules, pipeline_aws):
    """The production model the candidate is compared with comes from the model's own group only."""
    create_endpoint("churn-prod", {"v41": 1.0})
    from tests.pipelines.conftest import register_production

    register_production(steps, first_feature_model(), group="fraud", key="fraud/prod/model.tar.gz")
    _, _, evaluation = run_pipeline(steps, pipeline(steps), "manual__1")
    assert evaluation["production"] is None  # fraud's Approved package is not churn's production
