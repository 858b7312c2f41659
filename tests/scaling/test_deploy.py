"""The generated DAG's deploy and scaling: the endpoint it creates is tagged for cost allocation, and a later
deploy's UpdateEndpoint keeps the instances Application Auto Scaling gave the variant that serves (UpdateEndpoint
gives each variant its config's count)."""

from __future__ import annotations

import boto3

from tests.pipelines.conftest import REGION, modules, pipeline, pipeline_aws, run_pipeline, steps  # noqa: F401
from tests.scaling.conftest import counts, set_count


def test_the_endpoint_is_tagged_and_a_deploy_keeps_the_instances_the_stable_variant_scaled_to(steps, modules,
                                                                                               pipeline_aws):
    p = pipeline(steps, execution_role="arn:aws:iam::123456789012:role/sagemaker")
    sm_client = steps.aws_client("sagemaker", REGION)
    for run_id in ("manual__1", "manual__2"):
        _, trained, evaluation = run_pipeline(steps, p, run_id)
        evaluation = dict(evaluation, promote=True)
        result = steps.step_deploy(p, {}, run_id, evaluation, trained, sm_client, steps.aws_client("cloudwatch", REGION))
        if run_id == "manual__1":
            sm = boto3.client("sagemaker", region_name=REGION)
            arn = sm.describe_endpoint(EndpointName="churn-prod")["EndpointArn"]
            assert {"Key": "modelbot:model", "Value": "churn"} in sm.list_tags(ResourceArn=arn)["Tags"]
            stable = result["candidate_variant"]
            set_count("churn-prod", stable, 3)  # Application Auto Scaling grew it under load
    assert counts("churn-prod") == {stable: 3, result["candidate_variant"]: 1}  # the rollout sizes the candidate
