"""Starting rollouts: from the Airflow deploy (idempotent per run) and from Slack (variant detection, own thread)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sqlalchemy import update

from bot.registry import RolloutSettings
from bot.rollouts import executor
from bot.rollouts import service as rollouts
from bot.rollouts.plans import plan_abort, plan_rollback, view
from bot.rollouts.tables import Rollout
from handlers.events.mention import thread_model
from jobs import rollout_controller
from tests.endpoints import create_endpoint
from tests.rollout.conftest import weights
from tests.rollout.test_scenarios import churn, deploy

SETTINGS = RolloutSettings()


def test_deploy_starts_once_per_run(services, slack, churn_endpoint, t0, sagemaker_proxy):
    first, parent = deploy(services, slack, t0)
    again = rollouts.start_from_deploy(services, "churn", endpoint="churn-prod", stable_variant="v41",
                                       candidate_variant="v42", run_id="manual__1", channel="C0CHURN",
                                       thread_ts=parent, now=t0 + timedelta(minutes=1))
    assert again == first
    assert weights() == {"v41": 0.9, "v42": 0.1}
    assert sagemaker_proxy.operations.count("UpdateEndpointWeightsAndCapacities") == 1
    [step] = slack.thread("C0CHURN", parent)[1:]
    assert step["text"].startswith("*Step 1 of 3: `v42` at 10% of traffic*") and "Waiting for traffic" in step["text"]
    assert thread_model(services, "C0CHURN", parent) == "churn"  # @modelbot in the run's thread acts on churn


def test_a_new_deploy_replaces_a_rollout_that_has_not_begun(services, slack, churn_endpoint, t0, sagemaker_proxy):
    """A rollout recorded but not begun (it moved no traffic) is replaced by a deploy; its abort changes no
    weights. (A deploy during a rollout in progress waits instead: tests/rollout/test_traffic_ownership.py.)"""
    old = rollouts._new_rollout(services, churn(services), source="slack", endpoint="churn-prod", stable="v41",
                                candidate="v42", run_key=None, started_by="U0ALICE", channel=None, thread_ts=None,
                                previous_config="churn-prod-config-1", now=t0)
    new, new_parent = deploy(services, slack, t0 + timedelta(minutes=5), run_id="manual__2")
    aborted = rollouts.load(services, old)
    assert aborted.state == "aborted" and "replaced by the candidate `v42` of Airflow run `manual__2`" in \
        aborted.ended_reason
    assert rollouts.load(services, new).state == "progressing"
    calls = [{w["VariantName"]: w["DesiredWeight"] for w in c["DesiredWeightsAndCapacities"]}
             for c in sagemaker_proxy.weight_calls]
    assert calls == [{"v41": 0.9, "v42": 0.1}]  # the new rollout's first step only


def test_promote_from_slack_detects_variants_and_opens_its_own_thread(services, slack, churn_endpoint, t0):
    model = churn(services)
    outcome = rollouts.start_from_slack(services, model, user_id="U0ALICE", now=t0)
    assert "`v42` replacing `v41` on `churn-prod`, first step 10%" in outcome.text and "rollout thread" in outcome.text
    r = rollouts.load(services, outcome.rollout_id)
    [parent] = [m for m in slack.messages("C0CHURN") if m["ts"] == r.thread_ts]
    assert "Rollout of churn" in parent["text"] and "Started by <@U0ALICE>" in parent["text"]
    assert thread_model(services, "C0CHURN", r.thread_ts) == "churn"
    assert weights() == {"v41": 0.9, "v42": 0.1}

    with pytest.raises(rollouts.RolloutRefused) as err:
        rollouts.start_from_slack(services, model, user_id="U0ALICE", now=t0)
    assert "already being rolled out" in str(err.value)

    rollouts.pause(services, model, user_id="U0ALICE", now=t0 + timedelta(minutes=1))
    [parent] = [m for m in slack.messages("C0CHURN") if m["ts"] == r.thread_ts]
    assert "Paused at 10%" in parent["text"]  # the thread's parent shows where the rollout is
    outcome = rollouts.start_from_slack(services, model, user_id="U0ALICE", now=t0 + timedelta(minutes=2))
    assert "Resumed" in outcome.text and rollouts.load(services, r.id).state == "progressing"
    line = rollouts.rollout_summary(services, model)
    assert line.startswith("Step 1 of 3: `v42` at 10% of traffic") and f"p{r.thread_ts.replace('.', '')}" in line


@pytest.mark.parametrize("split, variant, expected", [
    ({"blue": 0.5, "green": 0.5}, None, "has `blue` 50%, `green` 50%"),
    ({"v41": 1.0, "v42": 0.0, "v43": 0.0}, None, "`/model promote <model> --variant NAME`"),
    ({"v41": 1.0, "v42": 0.0}, "v9", "There is no variant `v9` to promote"),
])
def test_promote_says_what_it_found_when_the_candidate_is_unclear(services, rollout_aws, split, variant, expected):
    create_endpoint("churn-prod", split)
    with pytest.raises(rollouts.RolloutRefused) as err:
        rollouts.start_from_slack(services, churn(services), user_id="U0ALICE", variant=variant)
    assert expected in str(err.value)
    assert rollouts.rollout_summary(services, churn(services)) is None  # nothing was started


def test_promote_with_variant_picks_the_named_candidate(services, slack, rollout_aws):
    create_endpoint("churn-prod", {"v41": 1.0, "v42": 0.0, "v43": 0.0})
    outcome = rollouts.start_from_slack(services, churn(services), user_id="U0ADMIN", variant="v43")
    assert "`v43` replacing `v41`" in outcome.text
    assert weights() == {"v41": 0.9, "v42": 0.0, "v43": 0.1}


def test_a_new_rollout_waits_for_an_aborted_candidate_to_go_to_zero(services, slack, churn_endpoint, t0,
                                                                     sagemaker_proxy):
    old, _ = deploy(services, slack, t0, run_id="manual__1")
    assert weights() == {"v41": 0.9, "v42": 0.1}
    # The rollout is aborted (its endpoint was changed under it, say) while SageMaker refuses the change.
    sagemaker_proxy.fail_next("UpdateEndpointWeightsAndCapacities", message="Cannot update in-progress endpoint")
    executor.transition(services, old, lambda r: plan_abort(r, t0 + timedelta(minutes=4), reason="test"))
    assert rollouts.load(services, old).pending is not None  # the abort's weights are owed
    new, _ = deploy(services, slack, t0 + timedelta(minutes=5), run_id="manual__2")
    assert rollouts.load(services, new).state == "pending"  # it waits for the abort's weights

    rollout_controller.tick(services, t0 + timedelta(minutes=6))
    assert rollouts.load(services, old).state == "aborted" and rollouts.load(services, old).pending is None
    # The abort's weights (v42 to 0) were set, then the new rollout's first step: in that order.
    calls = [c for c in sagemaker_proxy.weight_calls]
    assert [dict((v["VariantName"], v["DesiredWeight"]) for v in c["DesiredWeightsAndCapacities"])
            for c in calls[-2:]] == [{"v41": 1.0, "v42": 0.0}, {"v41": 0.9, "v42": 0.1}]
    assert weights() == {"v41": 0.9, "v42": 0.1}


def test_an_intent_superseded_by_a_newer_rollout_is_dropped_not_carried_out(services, slack, churn_endpoint, t0):
    """A stuck rollback of an old rollout must not force old weights against the model's newer rollout."""
    old, _ = deploy(services, slack, t0, run_id="manual__1")
    executor.transition(services, old, lambda r: plan_abort(r, t0 + timedelta(minutes=4), reason="test"))
    new, _ = deploy(services, slack, t0 + timedelta(minutes=5), run_id="manual__2")
    assert weights() == {"v41": 0.9, "v42": 0.1}
    stale = plan_rollback(view(rollouts.load(services, old), state="progressing", active_model="churn"), SETTINGS, t0 + timedelta(minutes=6), automatic=True,
                          actor=None, reason="an old worker's late judgement")
    with services.store.session() as s:  # the old rollout's intent, as a slow worker would have left it
        s.execute(update(Rollout).where(Rollout.id == old).values(
            pending=stale.intent.to_json(), target_weights={"v41": 1.0, "v42": 0.0}))
    assert executor.carry_out(services, old) is None
    assert weights() == {"v41": 0.9, "v42": 0.1}  # the newer rollout's step stands
    dropped = rollouts.load(services, old)
    assert dropped.pending is None and f"superseded by rollout {new}" in dropped.last_error
