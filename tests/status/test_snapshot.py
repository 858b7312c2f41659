"""The worker's endpoint snapshot against moto: what it stores, what one pass costs, throttling, weight changes."""

from __future__ import annotations

import boto3

from bot.status import snapshot
from bot.status.tables import EndpointSnapshot
from jobs import endpoint_snapshot
from tests.endpoints import create_endpoint
from tests.status.conftest import ack, block_texts


def test_a_weight_change_shows_after_one_worker_pass(services_for, status_aws, sagemaker_proxy):
    services = services_for(["churn", "fraud"])
    create_endpoint("churn-prod", {"v41": 0.9, "v42": 0.1}, instance_type="ml.c5.xlarge")
    create_endpoint("fraud-prod", {"blue": 1.0})
    summary = endpoint_snapshot.run_once(services)
    assert summary.startswith("2 endpoints read in ") and "4 SageMaker calls" in summary
    text = block_texts(ack(services, "status"))
    assert "`v41` 90% ml.c5.xlarge×1 · `v42` 10% ml.c5.xlarge×1" in text

    boto3.client("sagemaker", region_name="us-east-1", endpoint_url=sagemaker_proxy.url).\
        update_endpoint_weights_and_capacities(EndpointName="churn-prod", DesiredWeightsAndCapacities=[
            {"VariantName": "v41", "DesiredWeight": 0.5}, {"VariantName": "v42", "DesiredWeight": 0.5}])
    sagemaker_proxy.reset()
    assert "`v41` 90%" in block_texts(ack(services, "status"))  # the store, until the next pass
    assert sagemaker_proxy.operations == []  # status itself never calls AWS
    endpoint_snapshot.run_once(services)
    after = block_texts(ack(services, "status"))
    assert "`v41` 50% ml.c5.xlarge" in after and "`v42` 50% ml.c5.xlarge" in after
    # Endpoint configs cannot change: their instance types are read once, so a steady pass is one call a model.
    assert sorted(sagemaker_proxy.operations) == ["DescribeEndpoint", "DescribeEndpoint"]

    detail = ack(services, "status churn")
    assert detail["follow_up"] is True  # the charts follow after the ack
    assert "`v41` 50% (ml.c5.xlarge)" in detail["text"] and "read by the worker" in detail["text"]


def test_throttling_slows_the_pass_down_and_it_still_completes(services_for, status_aws, sagemaker_proxy):
    services = services_for(["churn"])
    create_endpoint("churn-prod", {"v41": 1.0})
    sagemaker_proxy.fail_next("DescribeEndpoint", "ThrottlingException", "Rate exceeded", count=3)
    result = snapshot.take(services, rate=50)
    assert (result.throttled, result.errors) == (3, 0), sagemaker_proxy.operations
    assert sagemaker_proxy.operations.count("DescribeEndpoint") == 4
    assert "`v41` 100%" in block_texts(ack(services, "status"))

    sagemaker_proxy.fail_next("DescribeEndpoint", "ThrottlingException", "Rate exceeded", count=10)
    result = snapshot.take(services, rate=50)
    assert result.errors == 1
    text = block_texts(ack(services, "status"))
    # The last good data stays, with the reason it could not be refreshed beside it.
    assert "`v41` 100%" in text and "SageMaker throttled describe_endpoint of `churn-prod`" in text
    assert "1 need attention" in text


def test_a_deleted_endpoint_is_not_shown_with_its_old_weights(services_for, status_aws):
    services = services_for(["churn"])
    create_endpoint("churn-prod", {"v41": 1.0})
    snapshot.take(services)
    boto3.client("sagemaker", region_name="us-east-1").delete_endpoint(EndpointName="churn-prod")
    snapshot.take(services)
    text = block_texts(ack(services, "status"))
    assert "endpoint `churn-prod` not found in us-east-1" in text and "`v41`" not in text
    with services.store.session() as s:
        assert s.get(EndpointSnapshot, "churn").variants == []


def test_many_endpoints_are_read_with_bounded_concurrency(services_for, status_aws, sagemaker_proxy):
    names = [f"m{i:02d}" for i in range(30)]
    services = services_for(names)
    for n in names:
        create_endpoint(f"{n}-prod", {"blue": 1.0})
    sagemaker_proxy.reset()
    result = snapshot.take(services, concurrency=4, rate=200)
    assert (result.models, result.calls, result.errors, result.concurrency) == (30, 60, 0, 4)
    assert "30 models: 0 need attention, 0 rolling out, 30 steady" in block_texts(ack(services, "status"))
