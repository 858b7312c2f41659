"""Scaling through rollouts, on moto and both databases, with the UpdateEndpoint fake refusing to remove a variant
that is still a scalable target: the candidate gets its instances before its share, scale-in is suspended on both
variants while traffic moves, the old variant is deregistered before it is retired, the promoted one carries the
scaling; a rollback moves the weights first even while Application Auto Scaling throttles."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.exceptions import ClientError

from bot.rollouts import service as rollouts
from tests.rollout.conftest import Traffic, run_ticks, weights
from tests.scaling.conftest import REGION, aas, counts, create_endpoint, set_count, target, worker_pass

AAS_OPERATIONS = ("DescribeScalableTargets", "DescribeScalingPolicies", "RegisterScalableTarget",
                  "DeregisterScalableTarget", "PutScalingPolicy", "DeleteScalingPolicy")


@pytest.fixture
def t0() -> datetime:
    return (datetime.now(timezone.utc) - timedelta(hours=24)).replace(second=0, microsecond=0)


def deploy(services, t0):
    parent = services.slack.chat_postMessage(channel="C0CHURN", text="Run churn_lifecycle manual__1")["ts"]
    rollout_id = rollouts.start_from_deploy(services, "churn", endpoint="churn-prod", stable_variant="v41",
                                            candidate_variant="v42", run_id="manual__1", channel="C0CHURN",
                                            thread_ts=parent, now=t0)
    return rollout_id, parent


def suspended(variant: str) -> bool:
    return bool((target("churn-prod", variant).get("SuspendedState") or {}).get("DynamicScalingInSuspended"))


def test_a_promotion_sizes_the_candidate_first_and_moves_the_scaling_to_it(services, slack, sagemaker_proxy, t0):
    create_endpoint("churn-prod", {"v41": (1.0, 4), "v42": (0.0, 1)})
    worker_pass(services)
    assert (target("churn-prod", "v41")["MinCapacity"], target("churn-prod", "v42")) == (1, None)
    sagemaker_proxy.apply_capacity = False  # the test says when instances are in service

    rollout_id, parent = deploy(services, t0)
    # Half the traffic needs half of v41's 4 instances: asked for, and the shift waits for them.
    assert weights() == {"v41": 1.0, "v42": 0.0}
    assert target("churn-prod", "v42")["MinCapacity"] == 2 and suspended("v42") and suspended("v41")
    traffic = Traffic(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.004})
    now = run_ticks(services, traffic, t0, 2)
    assert weights() == {"v41": 1.0, "v42": 0.0}
    set_count("churn-prod", "v42", 2)
    now = run_ticks(services, traffic, now, 1)
    assert weights() == {"v41": 0.5, "v42": 0.5}
    waits = [m for m in slack.thread("C0CHURN", parent) if "waiting for capacity" in m["text"]]
    assert len(waits) == 1 and "`v42` has 1 of the 2 instances 50% of the traffic needs" in waits[0]["text"]
    worker_pass(services)  # the worker agrees with the rollout: still suspended, the candidate's minimum kept
    assert suspended("v41") and suspended("v42") and target("churn-prod", "v42")["MinCapacity"] == 2

    for _ in range(12):
        now = run_ticks(services, traffic, now, 1)
        r = rollouts.load(services, rollout_id)
        if r.pending and "waiting for capacity" in (r.last_error or ""):
            assert target("churn-prod", "v42")["MinCapacity"] == 4  # all of it needs all of v41's fleet
            set_count("churn-prod", "v42", 4)
        if r.state == "promoted" and r.pending is None:
            break
    assert rollouts.load(services, rollout_id).state == "promoted"
    # Retired: v41 stopped being a scalable target before UpdateEndpoint removed it (the fake refuses otherwise),
    # and v42 kept its 4 instances through the update.
    ops = sagemaker_proxy.operations
    assert "DeregisterScalableTarget" in ops and ops.index("DeregisterScalableTarget") < ops.index("UpdateEndpoint")
    assert weights() == {"v42": 1.0} and counts("churn-prod") == {"v42": 4}
    assert target("churn-prod", "v41") is None
    worker_pass(services)
    promoted = target("churn-prod", "v42")
    assert (promoted["MinCapacity"], promoted["MaxCapacity"]) == (1, 6) and not suspended("v42")


def test_a_rollback_moves_the_weights_first_while_application_auto_scaling_refuses(services, slack,
                                                                                   sagemaker_proxy, t0):
    create_endpoint("churn-prod", {"v41": (1.0, 2), "v42": (0.0, 1)})
    worker_pass(services)
    for op in AAS_OPERATIONS:  # (throttling is retried with back-off first: tests/scaling/test_integration.py)
        sagemaker_proxy.fail_next(op, "AccessDeniedException", "not authorized", count=50)
    rollout_id, parent = deploy(services, t0)
    # The start could not suspend scale-in or ask for capacity; it went ahead (one instance carries half of what
    # two did) and the channel is told.
    assert weights() == {"v41": 0.5, "v42": 0.5}
    seen = len(sagemaker_proxy.operations)

    bad = Traffic(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.05})
    run_ticks(services, bad, t0, 6, stop=lambda: rollouts.load(services, rollout_id).state == "rolled_back")
    assert rollouts.load(services, rollout_id).state == "rolled_back"
    assert weights() == {"v41": 1.0, "v42": 0.0}
    assert not [op for op in sagemaker_proxy.operations[seen:] if op in AAS_OPERATIONS]  # never asked, never waited
    assert any(m["text"].startswith(":rotating_light:") for m in slack.thread("C0CHURN", parent))

    assert "not authorized" in worker_pass(services)  # the scaling comes after; the same failure is not said twice
    from bot.slack import outbox
    outbox.deliver_due(services)
    said = [m["text"] for m in slack.messages("C0CHURN") if "AccessDeniedException" in m["text"]]
    assert len(said) == 1 and "could not be asked for the instances `v42` needs for 50%" in said[0]
    assert "the traffic moved anyway" in said[0]
    with sagemaker_proxy._lock:
        sagemaker_proxy._faults.clear()
    worker_pass(services)
    assert not suspended("v41")  # scale-in back on the variant that serves
    parked = target("churn-prod", "v42")
    assert (parked["MinCapacity"], parked["MaxCapacity"]) == (1, 1)  # the rolled-back candidate: one instance


def test_update_endpoint_refuses_to_remove_or_retype_a_variant_that_is_a_scalable_target(scaling_aws):
    create_endpoint("churn-prod", {"v41": (0.0, 1), "v42": (1.0, 1)})
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_endpoint_config(EndpointConfigName="only-v42", ProductionVariants=[
        {"VariantName": "v42", "ModelName": "churn-prod-v42", "InitialInstanceCount": 1,
         "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0}])
    sm.create_endpoint_config(EndpointConfigName="v42-bigger", ProductionVariants=[
        {"VariantName": v, "ModelName": f"churn-prod-{v}", "InitialInstanceCount": 1,
         "InstanceType": "ml.m5.xlarge" if v == "v42" else "ml.m5.large", "InitialVariantWeight": w}
        for v, w in (("v41", 0.0), ("v42", 1.0))])
    for variant in ("v41", "v42"):
        aas().register_scalable_target(ServiceNamespace="sagemaker", ResourceId=f"endpoint/churn-prod/variant/{variant}",
                                       ScalableDimension="sagemaker:variant:DesiredInstanceCount",
                                       MinCapacity=1, MaxCapacity=2)
    for config, variant in (("only-v42", "v41"), ("v42-bigger", "v42")):
        with pytest.raises(ClientError, match=rf"variant\(s\) \"\[{variant}\]\" must be deregistered"):
            sm.update_endpoint(EndpointName="churn-prod", EndpointConfigName=config)
    aas().deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId="endpoint/churn-prod/variant/v41",
                                     ScalableDimension="sagemaker:variant:DesiredInstanceCount")
    sm.update_endpoint(EndpointName="churn-prod", EndpointConfigName="only-v42")
    assert weights() == {"v42": 1.0}


def test_the_retire_goes_ahead_without_application_auto_scaling_unless_a_target_is_really_there(
        services, slack, sagemaker_proxy):
    """fraud has no scaling table (and its role, say, no Application Auto Scaling rights): its promotion still
    retires the old variant. With a target on the old variant that cannot be deregistered, SageMaker refuses, and
    the thread says why."""
    from bot.rollouts.tables import Rollout
    from jobs import rollout_controller

    old = datetime.now(timezone.utc) - timedelta(hours=3)
    create_endpoint("fraud-prod", {"v1": (0.0, 1), "v2": (1.0, 1)})
    for op in AAS_OPERATIONS:
        sagemaker_proxy.fail_next(op, "AccessDeniedException", "not authorized", count=50)

    def baked(stable: str, candidate: str) -> int:
        parent = services.slack.chat_postMessage(channel="C0FRAUD", text=f"Rollout {stable} → {candidate}")["ts"]
        with services.store.session() as s:
            row = Rollout(model="fraud", active_model="fraud", source="slack", endpoint="fraud-prod", region=REGION,
                          stable_variant=stable, candidate_variant=candidate, steps=[100.0], state="baking",
                          step_index=0, step_started_at=old, target_weights={stable: 0.0, candidate: 1.0},
                          thread_channel="C0FRAUD", thread_ts=parent, version=1)
            s.add(row)
            s.flush()
            return row.id

    first = baked("v1", "v2")
    rollout_controller.tick(services)
    assert rollouts.load(services, first).state == "promoted" and weights("fraud-prod") == {"v2": 1.0}

    sm = boto3.client("sagemaker", region_name=REGION)
    sm.delete_endpoint(EndpointName="fraud-prod")
    create_endpoint("fraud-prod", {"v2": (0.0, 1), "v3": (1.0, 1)}, config_name="fraud-prod-config-2")
    with sagemaker_proxy._lock:
        sagemaker_proxy._faults.clear()
    aas().register_scalable_target(ServiceNamespace="sagemaker", ResourceId="endpoint/fraud-prod/variant/v2",
                                   ScalableDimension="sagemaker:variant:DesiredInstanceCount",
                                   MinCapacity=1, MaxCapacity=2)
    for op in AAS_OPERATIONS:
        sagemaker_proxy.fail_next(op, "AccessDeniedException", "not authorized", count=50)
    with services.store.session() as s:
        s.get(Rollout, first).active_model = None
    second = baked("v2", "v3")
    rollout_controller.tick(services)
    assert set(weights("fraud-prod")) == {"v2", "v3"}  # refused: v2 is still a scalable target
    from bot.slack import outbox
    outbox.deliver_due(services)
    [note] = [m["text"] for m in slack.messages("C0FRAUD") if "was not retired" in m["text"]]
    assert "must be deregistered as scalable targets" in note and "AccessDeniedException" in note
    assert rollouts.load(services, second).state == "promoted"
