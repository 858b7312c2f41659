"""The worker keeping Application Auto Scaling right, on moto and both databases: the first registration (said
once), a change by hand put back (said once, however many passes), failures said once while the model's targets
stay as they were, and scaling turned off."""

from __future__ import annotations

import pytest

from bot.registry import load_registry
from bot.scaling.tables import ScalingModel
from tests.scaling.conftest import aas, channel_texts, create_endpoint, policy_target, target, worker_pass

RID = "endpoint/churn-prod/variant/v41"


def set_by_hand(**kwargs) -> None:
    aas().register_scalable_target(ServiceNamespace="sagemaker", ResourceId=RID,
                                   ScalableDimension="sagemaker:variant:DesiredInstanceCount", **kwargs)


def test_registration_then_drift_put_back_and_said_once(services, slack, sagemaker_proxy):
    create_endpoint("churn-prod", {"v41": (1.0, 2)})
    summary = worker_pass(services)
    assert "1 targets set" in summary
    t = target("churn-prod", "v41")
    assert (t["MinCapacity"], t["MaxCapacity"]) == (1, 6)
    assert not (t.get("SuspendedState") or {}).get("DynamicScalingInSuspended")
    assert policy_target("churn-prod", "v41") == 700.0
    from bot.slack import outbox
    outbox.deliver_due(services)
    [on] = channel_texts(slack)
    assert "Auto scaling is on for *churn*" in on and "1–6 instances" in on and "700 invocations" in on

    worker_pass(services)  # nothing changed: nothing done, nothing said
    set_by_hand(MinCapacity=4, MaxCapacity=6)
    for _ in range(2):
        worker_pass(services)
    outbox.deliver_due(services)
    assert target("churn-prod", "v41")["MinCapacity"] == 1  # put back
    drift = [m for m in channel_texts(slack) if "changed outside modelbot" in m]
    assert len(drift) == 1 and "min 4 (modelbot keeps 1)" in drift[0]

    # Changed again later: a new drift, said again (once).
    aas().put_scaling_policy(PolicyName="modelbot-invocations-per-instance", ServiceNamespace="sagemaker",
                             ResourceId=RID, ScalableDimension="sagemaker:variant:DesiredInstanceCount",
                             PolicyType="TargetTrackingScaling", TargetTrackingScalingPolicyConfiguration={
                                 "TargetValue": 50.0, "PredefinedMetricSpecification": {
                                     "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}})
    worker_pass(services)
    worker_pass(services)
    outbox.deliver_due(services)
    assert policy_target("churn-prod", "v41") == 700.0
    drift = [m for m in channel_texts(slack) if "changed outside modelbot" in m]
    assert len(drift) == 2 and "target 50 invocations per instance (modelbot keeps 700)" in drift[1]
    assert sum("Auto scaling is on" in m for m in channel_texts(slack)) == 1


def test_a_refusing_application_auto_scaling_is_said_once_and_mended_later(services, slack, sagemaker_proxy):
    create_endpoint("churn-prod", {"v41": (1.0, 2)})
    sagemaker_proxy.fail_next("RegisterScalableTarget", "AccessDeniedException",
                              "User is not authorized to perform: application-autoscaling:RegisterScalableTarget",
                              count=3)
    for _ in range(3):
        summary = worker_pass(services)
    assert "not authorized" in summary
    assert target("churn-prod", "v41") is None
    from bot.slack import outbox
    outbox.deliver_due(services)
    problems = [m for m in channel_texts(slack) if "could not be kept right" in m]
    assert len(problems) == 1 and "AccessDeniedException" in problems[0] and "rollouts do not wait" in problems[0]
    with services.store.session() as s:
        assert "not authorized" in s.get(ScalingModel, "churn").problem  # /model status shows it meanwhile

    worker_pass(services)  # allowed again
    assert target("churn-prod", "v41")["MaxCapacity"] == 6
    with services.store.session() as s:
        assert s.get(ScalingModel, "churn").problem is None


def test_scaling_removed_from_the_models_file_is_deregistered_and_said(services, slack, scaling_models):
    create_endpoint("churn-prod", {"v41": (1.0, 2)})
    worker_pass(services)
    assert target("churn-prod", "v41") is not None
    text = scaling_models.read_text()
    start = text.index("[models.churn.scaling]")
    scaling_models.write_text(text[:start] + text[text.index("[models.fraud]"):])
    services.registry = load_registry(scaling_models)
    assert "1 deregistered" in worker_pass(services)
    assert target("churn-prod", "v41") is None and policy_target("churn-prod", "v41") is None
    from bot.slack import outbox
    outbox.deliver_due(services)
    assert any("Auto scaling removed from `v41`" in m for m in channel_texts(slack))


@pytest.mark.parametrize("bad,rule", [
    ("min_instances = 0\nmax_instances = 2\ntarget_invocations_per_instance = 10", "cannot scale below 1"),
    ("min_instances = 3\nmax_instances = 2\ntarget_invocations_per_instance = 10", "must be at least min_instances"),
    ("max_instances = 2\ntarget_invocations_per_instance = 0", "must be more than 0"),
])
def test_bad_bounds_are_refused_with_the_rule(tmp_path, bad, rule):
    from bot.registry import RegistryError

    path = tmp_path / "models.toml"
    path.write_text(f'[models.m]\nchannel = "C0M"\nendpoint = "m"\n[models.m.scaling]\n{bad}\n')
    with pytest.raises(RegistryError, match=rule) as info:
        load_registry(path)
    assert "model 'm', field 'scaling" in str(info.value)
