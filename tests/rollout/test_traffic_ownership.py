"""Every share of an endpoint's traffic belongs to a rollout that judges it (issue 21, items 2-4).

- A weight change sets every variant of the endpoint: a variant the rollout does not name goes to 0.
- A deploy onto an endpoint whose model has a rollout in progress waits for that rollout to end, then rolls
  out against whatever serves all the traffic by then; it never makes a three-way split.
- A traffic change that fails keeps the latest target owed, whoever wrote last; an owed shift does not stop
  the judgement, and a rollback replaces it (the stale, higher share is never applied).

moto behind the UpdateEndpoint fake, the Slack emulator, the real controller; SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import boto3

from bot.rollouts import executor
from bot.rollouts import service as rollouts
from bot.rollouts.plans import plan_enter_step
from bot.rollouts.states import Event
from jobs import rollout_controller
from tests.endpoints import IMAGE, ROLE, create_endpoint
from tests.rollout.conftest import REGION, Traffic, deliver_all, run_ticks, weights
from tests.rollout.test_scenarios import churn, deploy

GOOD = dict(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.004, "v43": 0.004})
IN_PROGRESS = 'Cannot update in-progress endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/churn-prod".'


def add_variant(endpoint: str, variant: str, config: str) -> None:
    """What the lifecycle DAG's deploy does: a new endpoint config with every current variant at its weight
    and the candidate at 0, then UpdateEndpoint (the proxy in front of moto answers it)."""
    sm = boto3.client("sagemaker", region_name=REGION)
    now = {v["VariantName"]: v["CurrentWeight"] for v in sm.describe_endpoint(EndpointName=endpoint)["ProductionVariants"]}
    sm.create_model(ModelName=f"{endpoint}-{variant}", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[
        {"VariantName": name, "ModelName": f"{endpoint}-{name}", "InitialInstanceCount": 1,
         "InstanceType": "ml.m5.large", "InitialVariantWeight": weight}
        for name, weight in [*now.items(), (variant, 0.0)]])
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)


def deploy_run(services, now, run_id: str, stable: str, candidate: str) -> tuple[int, str]:
    """The run watcher handing a finished deploy task over: its XCom names the stable and candidate variants."""
    parent = services.slack.chat_postMessage(channel="C0CHURN", text=f"Run churn_lifecycle {run_id}")["ts"]
    rollout_id = rollouts.start_from_deploy(services, "churn", endpoint="churn-prod", stable_variant=stable,
                                            candidate_variant=candidate, run_id=run_id, channel="C0CHURN",
                                            thread_ts=parent, now=now)
    return rollout_id, parent


def started(services, run_id: str):
    """The rollout the run's deploy started, once it has."""
    from bot.rollouts import tables as store

    with services.store.session() as s:
        return store.by_run_key(s, f"churn/{run_id}")


def shares(endpoint: str = "churn-prod") -> dict[str, float]:
    split = weights(endpoint)
    total = sum(split.values()) or 1.0
    return {name: round(weight / total, 4) for name, weight in split.items()}


def unowned(services, model: str = "churn") -> dict[str, float]:
    """Shares served by variants that neither the model's rollout in progress names nor, with none in
    progress, the one variant serving everything."""
    split = {k: v for k, v in shares().items() if v > 0}
    with services.store.session() as s:
        from bot.rollouts import tables as store

        active = store.active_for(s, model)
    if active is None or active.state == "pending":
        return split if len(split) > 1 else {}
    return {k: v for k, v in split.items() if k not in (active.stable_variant, active.candidate_variant)}


def test_every_weight_change_sets_every_variant_of_the_endpoint(services, slack, rollout_aws, t0, sagemaker_proxy):
    # An older variant was left with a share by hand: the rollout's first step takes it to 0.
    create_endpoint("churn-prod", {"v41": 0.8, "v40": 0.2, "v42": 0.0})
    rollout_id, _ = deploy(services, slack, t0)
    assert weights() == {"v41": 0.9, "v40": 0.0, "v42": 0.1}
    rollouts.rollback(services, churn(services), user_id="U0ALICE", reason="test", now=t0 + timedelta(minutes=1))
    assert weights() == {"v41": 1.0, "v40": 0.0, "v42": 0.0}
    for call in sagemaker_proxy.weight_calls:
        assert {w["VariantName"] for w in call["DesiredWeightsAndCapacities"]} == {"v40", "v41", "v42"}


def test_a_deploy_during_the_50_percent_step_waits_then_rolls_out_against_what_serves(
        services, slack, churn_endpoint, t0):
    first, _ = deploy(services, slack, t0, run_id="manual__1")
    now = run_ticks(services, Traffic(**GOOD), t0, 8, stop=lambda: weights()["v42"] == 0.5)
    assert weights() == {"v41": 0.5, "v42": 0.5}

    # The DAG adds v43 at 0 and names the highest weight, ties by name, as the stable variant: v42.
    add_variant("churn-prod", "v43", "churn-prod-config-2")
    waits_for, parent = deploy_run(services, now, "manual__2", stable="v42", candidate="v43")
    assert waits_for == first and started(services, "manual__2") is None
    deliver_all(services)
    assert rollouts.load(services, first).state == "progressing"
    assert weights() == {"v41": 0.5, "v42": 0.5, "v43": 0.0}
    [waits] = [m for m in slack.thread("C0CHURN", parent) if "waits" in m["text"]]
    assert f"rollout {first}" in waits["text"] and "`v42`" in waits["text"] and "`v43`" in waits["text"]

    # v42 turns bad at 50%: rolled back; only then does v43's rollout begin, against v41, which serves all.
    bad = Traffic(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.05, "v43": 0.004})
    seen = []
    for _ in range(6):
        now = run_ticks(services, bad, now, 1)
        seen.append((shares(), unowned(services)))
        if started(services, "manual__2") is not None:
            break
    assert all(not extra for _, extra in seen), seen
    assert rollouts.load(services, first).state == "rolled_back"
    r = started(services, "manual__2")
    assert r.state == "progressing" and (r.stable_variant, r.candidate_variant) == ("v41", "v43")
    assert weights() == {"v41": 0.9, "v42": 0.0, "v43": 0.1}
    assert any(m["text"].startswith("*Step 1 of 3: `v43`") for m in slack.thread("C0CHURN", parent))


def test_a_deploy_during_a_bake_waits_for_the_promotion_and_keeps_its_candidate(services, slack, churn_endpoint,
                                                                                 t0, sagemaker_proxy):
    first, _ = deploy(services, slack, t0, run_id="manual__1")
    rollouts.force_promote(services, churn(services), user_id="U0ALICE", reason="hotfix", now=t0)
    assert weights() == {"v41": 0.0, "v42": 1.0}
    add_variant("churn-prod", "v43", "churn-prod-config-2")
    waits_for, parent = deploy_run(services, t0 + timedelta(minutes=5), "manual__2", stable="v42",
                                   candidate="v43")
    assert waits_for == first and rollouts.load(services, first).state == "baking"
    assert weights() == {"v41": 0.0, "v42": 1.0, "v43": 0.0}

    run_ticks(services, None, t0 + timedelta(minutes=5), 8, stop=lambda: started(services, "manual__2"))
    assert rollouts.load(services, first).state == "promoted"
    # v41 was retired; the waiting candidate stayed on the endpoint and is rolled out against v42.
    r = started(services, "manual__2")
    assert (r.state, r.stable_variant, r.candidate_variant) == ("progressing", "v42", "v43")
    assert weights() == {"v42": 0.9, "v43": 0.1}


def test_a_stale_shift_written_after_a_rollback_leaves_the_rollback_owed(services, slack, churn_endpoint, t0,
                                                                          sagemaker_proxy, monkeypatch):
    rollout_id, parent = deploy(services, slack, t0)
    settings = churn(services).rollout
    # The controller commits the shift to 25% and is about to send it ...
    stale = executor.commit(services, rollouts.load(services, rollout_id), plan_enter_step(
        rollouts.load(services, rollout_id), settings, 1, t0 + timedelta(minutes=30), kind=Event.SHIFT))
    # ... when an owner's rollback commits and is carried out first.
    rollouts.rollback(services, churn(services), user_id="U0ALICE", reason="dashboards",
                      now=t0 + timedelta(minutes=30))
    assert weights() == {"v41": 1.0, "v42": 0.0}

    # The stale write lands (SageMaker accepts it); the endpoint is then Updating, so setting the latest
    # target right after it is refused.
    real = services.sagemaker.set_weights
    calls = []

    def set_weights(endpoint, region, target):
        calls.append(dict(target))
        changed = real(endpoint, region, target)
        if len(calls) == 1:
            sagemaker_proxy.fail_next("UpdateEndpointWeightsAndCapacities", message=IN_PROGRESS)
        return changed

    with monkeypatch.context() as patched:
        patched.setattr(services.sagemaker, "set_weights", set_weights)
        executor._carry_out_once(services, stale)
    assert calls[0] == {"v41": 0.75, "v42": 0.25}
    assert weights() == {"v41": 0.75, "v42": 0.25}

    r = rollouts.load(services, rollout_id)
    assert r.state == "rolled_back" and r.pending is not None, "the rollback's weights must stay owed"
    rollout_controller.tick(services, t0 + timedelta(minutes=31))
    assert weights() == {"v41": 1.0, "v42": 0.0}
    assert rollouts.load(services, rollout_id).pending is None


def test_an_owed_shift_keeps_being_judged_and_a_rollback_replaces_it(services, slack, churn_endpoint, t0,
                                                                      sagemaker_proxy):
    rollout_id, _ = deploy(services, slack, t0)
    Traffic(**GOOD).write(t0, 30)
    # SageMaker refuses every weight change for a while (the endpoint is Updating).
    sagemaker_proxy.fail_next("UpdateEndpointWeightsAndCapacities", message=IN_PROGRESS, count=3)
    rollout_controller.tick(services, t0 + timedelta(minutes=30))
    r = rollouts.load(services, rollout_id)
    assert r.step_index == 1 and r.pending is not None  # the shift to 25% is owed
    assert weights() == {"v41": 0.9, "v42": 0.1}

    # The candidate turns bad while the shift is owed; SageMaker answers again after a while.
    bad = Traffic(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.05})
    now = t0 + timedelta(minutes=30)
    for _ in range(5):
        bad.write(now, 10)
        now += timedelta(minutes=10)
        rollout_controller.tick(services, now)
    r = rollouts.load(services, rollout_id)
    assert r.state == "rolled_back" and r.pending is None
    assert weights() == {"v41": 1.0, "v42": 0.0}
    # What SageMaker accepted once it answered again (the first three calls were refused): never the 25%.
    accepted = [{w["VariantName"]: w["DesiredWeight"] for w in call["DesiredWeightsAndCapacities"]}
                for call in sagemaker_proxy.weight_calls[3:]]
    assert {"v41": 0.75, "v42": 0.25} not in accepted, f"the stale shift was applied: {accepted}"
