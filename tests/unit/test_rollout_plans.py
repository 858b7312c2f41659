"""The plan functions, called directly on detached Rollout rows: no database, no Slack, no AWS.

A plan is what a transition will write (column values), what it wants done outside (the intent) and the
event row; these tests read them as the executor would."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bot.registry import RolloutSettings
from bot.rollouts.judgement import Counts, judge
from bot.rollouts.plans import (
    Intent,
    plan_abort,
    plan_bake,
    plan_enter_step,
    plan_finish_bake,
    plan_judgement,
    plan_pause,
    plan_resume,
    plan_rollback,
    retire_config_name,
)
from bot.rollouts.states import IllegalTransition, RolloutState
from bot.rollouts.tables import Rollout

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
SETTINGS = RolloutSettings()


def rollout(**changes) -> Rollout:
    values = dict(id=7, model="churn", active_model="churn", source="airflow", endpoint="churn-prod",
                  region="us-east-1", stable_variant="v41", candidate_variant="v42", steps=[10.0, 25.0, 50.0, 100.0],
                  state="progressing", step_index=0, step_started_at=NOW - timedelta(minutes=30),
                  timer_started_at=NOW - timedelta(minutes=30), thread_channel="C0CHURN", thread_ts="100.1",
                  evidence_ts="100.2", pause_ts=None, owns_parent=False, version=3, previous_config="churn-cfg-1",
                  resume_state=None, pending=None, last_evidence=None)
    values.update(changes)
    return Rollout(**values)


def roundtrip(intent: Intent) -> Intent:
    """What the executor reads back from rollouts.pending."""
    return Intent.from_json(intent.to_json())


def test_start_sets_the_first_step_and_posts_its_evidence_message():
    plan = plan_enter_step(rollout(state="pending", evidence_ts=None), SETTINGS, 0, NOW, kind="start")
    assert plan.values["state"] == RolloutState.PROGRESSING and plan.values["state"] == "progressing"
    assert plan.values["target_weights"] == {"v41": 0.9, "v42": 0.1}
    intent = roundtrip(plan.intent)
    assert intent.weights and not intent.restore and intent.retire is None and intent.page is None
    assert [(p.key, p.role) for p in intent.posts] == [("step", "evidence")]
    assert intent.posts[0].text.startswith("*Step 1 of 3")
    assert intent.updates == [] and not intent.chart  # nothing to close yet, no chart before any evidence


def test_a_shift_closes_the_old_evidence_message_and_draws_the_chart():
    plan = plan_enter_step(rollout(), SETTINGS, 1, NOW, kind="shift")
    assert plan.values["step_index"] == 1 and plan.values["target_weights"] == {"v41": 0.75, "v42": 0.25}
    [edit] = plan.intent.updates
    assert (edit.channel, edit.ts) == ("C0CHURN", "100.2") and "*Next:* step 2 at 25%" in edit.text
    assert plan.intent.chart and plan.event["kind"] == "shift"


def test_the_step_at_100_percent_is_baking():
    plan = plan_enter_step(rollout(step_index=2), SETTINGS, 3, NOW, kind="shift")
    assert plan.kind == "bake" and plan.values["state"] == "baking"
    assert plan.values["target_weights"] == {"v41": 0.0, "v42": 1.0}


def test_a_forced_promotion_alerts_and_broadcasts():
    plan = plan_bake(rollout(state="paused", resume_state="progressing", pause_ts="100.3"), SETTINGS, NOW,
                     forced_by="U0ALICE", reason="hotfix")
    intent = roundtrip(plan.intent)
    assert plan.kind == "forced" and intent.alert.actor == "U0ALICE" and intent.alert.reason == "hotfix"
    assert intent.posts[0].broadcast
    assert any(e.ts == "100.3" and "Forced to 100%" in e.text for e in intent.updates)  # the pause is closed


def test_finishing_the_bake_retires_the_old_variant():
    r = rollout(state="baking", step_index=3)
    plan = plan_finish_bake(r, NOW)
    intent = roundtrip(plan.intent)
    assert plan.values["state"] == "promoted" and plan.values["active_model"] is None
    assert intent.retire.variant == "v42" and intent.retire.config == retire_config_name(r) == "churn-prod-v42-r7"
    assert not intent.weights and intent.resolve_earlier


def test_a_rollback_sets_the_stable_variant_back_and_pages():
    plan = plan_rollback(rollout(), SETTINGS, NOW, automatic=False, actor="U0ALICE", reason="looks wrong")
    intent = roundtrip(plan.intent)
    assert plan.values["state"] == "rolled_back" and plan.values["target_weights"] == {"v41": 1.0, "v42": 0.0}
    assert intent.weights and not intent.restore
    assert (intent.page.reason, intent.page.automatic, intent.page.actor) == ("looks wrong", False, "U0ALICE")
    assert [(p.key, p.render, p.broadcast) for p in intent.posts] == [("rollback", "rollback", True)]


def test_rolling_back_a_promotion_restores_the_earlier_config():
    plan = plan_rollback(rollout(state="promoted", active_model=None), SETTINGS, NOW, automatic=False,
                         actor="U0ALICE", reason="late regression")
    intent = roundtrip(plan.intent)
    assert intent.restore and intent.restore_config == "churn-cfg-1" and not intent.weights
    assert plan.values["target_weights"] is None


def test_pause_and_resume_come_back_where_they_were():
    pause = plan_pause(rollout(state="baking"), SETTINGS, NOW, actor="U0ALICE", reason="wait for the launch")
    assert pause.values == {"state": "paused", "resume_state": "baking", "paused_reason": "wait for the launch"}
    paused = rollout(state="paused", resume_state="baking", pause_ts="100.3")
    resume = plan_resume(paused, SETTINGS, NOW, actor="U0ALICE")
    assert resume.values["state"] == "baking" and resume.values["pause_ts"] is None
    assert [p.key for p in resume.intent.posts] == ["resumed"]  # no new step message while baking
    resumed = plan_resume(rollout(state="paused", resume_state="progressing"), SETTINGS, NOW, actor=None)
    assert resumed.values["state"] == "progressing" and [p.key for p in resumed.intent.posts] == ["resumed", "step"]


def test_an_abort_takes_the_candidate_off_traffic_first():
    plan = plan_abort(rollout(step_index=1), NOW, reason="replaced by the candidate `v43`")
    assert plan.values["state"] == "aborted" and plan.values["active_model"] is None
    assert plan.values["target_weights"] == {"v41": 1.0, "v42": 0.0} and plan.intent.weights


@pytest.mark.parametrize("plan", [
    lambda r: plan_pause(r, SETTINGS, NOW, actor="U0ALICE", reason="x"),
    lambda r: plan_resume(r, SETTINGS, NOW, actor="U0ALICE"),
    lambda r: plan_bake(r, SETTINGS, NOW, forced_by="U0ALICE"),
    lambda r: plan_abort(r, NOW, reason="x"),
    lambda r: plan_finish_bake(r, NOW),
])
def test_finished_rollouts_cannot_be_moved(plan):
    for state in ("rolled_back", "aborted"):
        with pytest.raises(IllegalTransition):
            plan(rollout(state=state, active_model=None))


def test_a_progressing_rollout_cannot_be_resumed_nor_finished():
    with pytest.raises(IllegalTransition):
        plan_resume(rollout(), SETTINGS, NOW, actor="U0ALICE")
    with pytest.raises(IllegalTransition):
        plan_finish_bake(rollout(), NOW)


def test_judgement_rolls_back_a_worse_candidate_even_while_paused():
    stable, candidate = Counts(requests=40_000, errors_5xx=160, errors_4xx=0), Counts(requests=8_000, errors_5xx=240,
                                                                                       errors_4xx=0)
    decision = judge(stable, candidate, SETTINGS, 30.0)
    for r in (rollout(), rollout(state="paused", resume_state="progressing")):
        plan = plan_judgement(r, SETTINGS, decision, stable, candidate, NOW)
        assert plan is not None and plan.kind == "rollback" and plan.intent.page.automatic
        assert "5XX rate 3.00% vs stable 0.40%" in plan.intent.page.reason


def test_judgement_waits_with_too_few_requests_and_a_paused_rollout_only_waits():
    few = Counts(requests=30, errors_5xx=0, errors_4xx=0)
    assert plan_judgement(rollout(), SETTINGS, judge(few, few, SETTINGS, 5.0), few, few, NOW) is None
    same = Counts(requests=50_000, errors_5xx=200, errors_4xx=0)
    decision = judge(same, same, SETTINGS, 30.0)
    paused = rollout(state="paused", resume_state="progressing")
    assert plan_judgement(paused, SETTINGS, decision, same, same, NOW) is None
    shift = plan_judgement(rollout(), SETTINGS, decision, same, same, NOW)
    assert shift is not None and shift.kind == "shift"


def test_an_intent_written_before_the_split_still_reads():
    old = {"kind": "rollback", "weights": True, "id": "7.4", "chart": True, "parent": True,
           "updates": [{"channel": "C0CHURN", "ts": "100.2", "text": "t", "blocks": []}],
           "posts": [{"key": "rollback", "thread": True, "render": "rollback", "broadcast": True, "role": None}],
           "page": {"reason": "r", "automatic": True, "actor": None}}
    intent = Intent.from_json(old)
    assert intent.id == "7.4" and intent.page.automatic and intent.posts[0].render == "rollback"
    assert Intent.from_json(intent.to_json()) == intent
