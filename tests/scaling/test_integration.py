"""The Application Auto Scaling adapter on moto (through the fake, which can answer with errors): throttling is
retried with botocore's back-off, then named as such; a missing target is no error when deregistering."""

from __future__ import annotations

import pytest

from bot.integrations.autoscaling import AutoScaling, AutoScalingError, Policy
from bot.integrations.aws import AwsClients
from tests.scaling.conftest import REGION


def test_throttling_is_retried_then_named_and_deregistering_nothing_is_fine(scaling_aws, sagemaker_proxy):
    a = AutoScaling(AwsClients())
    a.register("churn-prod", "v41", REGION, min_capacity=1, max_capacity=3, scale_in_suspended=True)
    a.put_policy("churn-prod", "v41", REGION, Policy(700.0, scale_in_cooldown=300))
    sagemaker_proxy.fail_next("DescribeScalableTargets", "ThrottlingException", "Rate exceeded", count=1)
    [seen] = a.read(REGION, [("churn-prod", "v41"), ("churn-prod", "v9")]).values()
    assert (seen.min_capacity, seen.max_capacity, seen.scale_in_suspended) == (1, 3, True)
    assert seen.policy == Policy(700.0, scale_in_cooldown=300)
    assert sagemaker_proxy.operations.count("DescribeScalableTargets") == 2  # retried once

    # On the rollout controller's clock (two tries a call), still throttled: named as such, nothing changed.
    hurried = AutoScaling(AwsClients(deadline=(5.0, 2)))
    sagemaker_proxy.fail_next("RegisterScalableTarget", "ThrottlingException", "Rate exceeded", count=2)
    with pytest.raises(AutoScalingError) as info:
        hurried.register("churn-prod", "v41", REGION, min_capacity=2, max_capacity=3, scale_in_suspended=False)
    assert info.value.throttled and "too busy" in str(info.value) and "`v41` of endpoint `churn-prod`" in str(info.value)
    assert sagemaker_proxy.operations.count("RegisterScalableTarget") == 1 + 2
    assert a.read(REGION, [("churn-prod", "v41")])[("churn-prod", "v41")].min_capacity == 1

    assert a.deregister("churn-prod", "v41", REGION) is True
    assert a.deregister("churn-prod", "v41", REGION) is False
    assert a.read(REGION, [("churn-prod", "v41")]) == {}
