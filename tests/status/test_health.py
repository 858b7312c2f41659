"""Endpoint health in `/model status <model>`: each variant's state and instances, and SageMaker's failure
reason when a variant or the endpoint failed. The worker's snapshot reads DescribeEndpoint from moto; moto
never fails an endpoint by itself, so the tests put SageMaker's answers (VariantStatus, FailureReason,
instance counts) into moto's endpoint directly and read them back through boto3 like production does."""

from __future__ import annotations

from moto.core import DEFAULT_ACCOUNT_ID
from moto.sagemaker.models import sagemaker_backends

from bot.status import service as status
from bot.status import snapshot
from jobs import endpoint_snapshot
from tests.endpoints import create_endpoint
from tests.status.conftest import ack


def moto_endpoint(name: str):
    return sagemaker_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].endpoints[name]


def detail(services) -> list[str]:
    return ack(services, "status churn")["text"].splitlines()


def test_each_variants_health_and_instances(services_for, status_aws):
    services = services_for(["churn"])
    create_endpoint("churn-prod", {"v41": 1.0, "v42": 0.0})
    endpoint = moto_endpoint("churn-prod")
    stable, candidate = endpoint.production_variants
    stable.update(CurrentInstanceCount=2, DesiredInstanceCount=2)
    candidate.update(CurrentInstanceCount=0, DesiredInstanceCount=2, VariantStatus=[
        {"Status": "Creating", "StatusMessage": "Launching 2 ml.m5.large instances"}])
    endpoint_snapshot.run_once(services)
    assert ("Health: `v41` healthy, 2 instances · `v42` *starting*: Launching 2 ml.m5.large instances "
            "(0 of 2 instances)") in detail(services)

    # Started, but one instance short of what SageMaker wants (an instance replaced after a failed health check).
    candidate.update(CurrentInstanceCount=1, VariantStatus=[])
    endpoint_snapshot.run_once(services)
    assert "Health: `v41` healthy, 2 instances · :warning: `v42` 1 of 2 instances in service" in detail(services)

    # `/model status churn --live` reads SageMaker now, through the same snapshot code.
    stable.update(VariantStatus=[{"Status": "Updating", "StatusMessage": "Scaling from 2 to 3 instances"}],
                  DesiredInstanceCount=3)
    snapshot.take(services, [services.registry.get("churn")], source="live")
    state = status.from_snapshot(services, services.registry.get("churn")).endpoint
    assert state.variants[0].statuses == (("Updating", "Scaling from 2 to 3 instances"),)
    assert (state.variants[0].instance_count, state.variants[0].desired_instance_count) == (2, 3)


def test_sagemakers_failure_reason_for_a_failed_update_or_a_failed_endpoint(services_for, status_aws):
    services = services_for(["churn"])
    create_endpoint("churn-prod", {"v41": 1.0})
    endpoint = moto_endpoint("churn-prod")
    # UpdateEndpoint adding the candidate failed (its container never answered /ping): SageMaker went back to the
    # config before it, InService, and says why in FailureReason.
    reason = ("The primary container for production variant v42 did not pass the ping health check. Please check "
              "CloudWatch logs for this endpoint.")
    endpoint.failure_reason = reason
    endpoint_snapshot.run_once(services)
    assert (f":warning: SageMaker's last update of `churn-prod` failed: {reason} (the endpoint is InService on "
            "`churn-prod-config-1`)") in detail(services)

    endpoint.endpoint_status, endpoint.failure_reason = "Failed", "ModelError: model.pkl could not be unpickled"
    endpoint_snapshot.run_once(services)
    lines = detail(services)
    assert "Endpoint `churn-prod` (Failed) in us-east-1; production: `v41`" in lines
    assert (":rotating_light: SageMaker says endpoint `churn-prod` *failed*: ModelError: model.pkl could not be "
            "unpickled") in lines

    endpoint.endpoint_status, endpoint.failure_reason = "InService", None
    endpoint_snapshot.run_once(services)
    assert not [line for line in detail(services) if "failed" in line]
