"""The controller end to end, in process: moto (server mode) for SageMaker and CloudWatch, the Slack emulator,
the real judgement, SQLite and PostgreSQL. Virtual time: each tick is a controller pass `every` minutes later."""

from __future__ import annotations

from datetime import timedelta

from bot.rollouts import service as rollouts
from jobs import rollout_controller
from tests.rollout.conftest import Traffic, deliver_all, put_traffic, run_ticks, texts, weights


def deploy(services, slack, t0, run_id="manual__1"):
    parent = services.slack.chat_postMessage(channel="C0CHURN", text="Run churn_lifecycle manual__1")["ts"]
    rollout_id = rollouts.start_from_deploy(services, "churn", endpoint="churn-prod", stable_variant="v41",
                                            candidate_variant="v42", run_id=run_id, channel="C0CHURN",
                                            thread_ts=parent, now=t0)
    return rollout_id, parent


def alerts(slack):
    return [m for m in slack.messages("C0ALERTS") if m.get("thread_ts") in (None, m["ts"])]


def pages(slack):
    return [m for m in alerts(slack) if "was rolled back" in m["text"]]


def test_good_candidate_walks_every_step_then_bakes_and_is_promoted(services, slack, churn_endpoint, t0,
                                                                     sagemaker_proxy):
    rollout_id, parent = deploy(services, slack, t0)
    assert weights() == {"v41": 0.9, "v42": 0.1}
    traffic = Traffic(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.004}, rate_4xx={"v41": 0.01, "v42": 0.01})
    seen = []
    now = t0
    for _ in range(80):
        now = run_ticks(services, traffic, now, 1)
        seen.append((now, rollouts.load(services, rollout_id).state, weights().get("v42")))
        if seen[-1][1] == "promoted":
            break
    states = [s for _, s, _ in seen]
    assert states[-1] == "promoted", seen[-5:]
    shares = []
    for _, _, w in seen:
        if w is not None and (not shares or shares[-1] != w):
            shares.append(w)
    assert shares[:4] == [0.1, 0.25, 0.5, 1.0]
    baking = [t for t, s, _ in seen if s == "baking"]
    promoted_at = seen[-1][0]
    assert promoted_at - baking[0] >= timedelta(minutes=60)  # the old variant stayed at 0% for bake_minutes

    # The old variant is retired: the endpoint moved (UpdateEndpoint) to a config serving only v42.
    assert weights() == {"v42": 1.0}
    assert len(sagemaker_proxy.update_calls) == 1
    r = rollouts.load(services, rollout_id)
    assert r.pending is None and r.final_config == sagemaker_proxy.update_calls[0]["EndpointConfigName"]

    thread = slack.thread("C0CHURN", parent)[1:]
    bodies = texts(thread)
    step_messages = [m for m in thread if m["text"].startswith("*Step")]
    assert [m["text"].split(":")[0] for m in step_messages] == ["*Step 1 of 3", "*Step 2 of 3", "*Step 3 of 3"]
    assert any(m["edits"] for m in step_messages)  # waiting edits the step's message in place
    assert any("Promoted to 100%" in b for b in bodies) and any("Rollout complete" in b for b in bodies)
    assert alerts(slack) == []  # nobody paged



def churn(services):
    return services.registry.get("churn")


def buttons(message) -> dict[str, dict]:
    return {e["action_id"]: e for b in message.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]}


def test_bad_candidate_is_rolled_back_and_paged_once(services, slack, churn_endpoint, t0):
    rollout_id, parent = deploy(services, slack, t0)
    traffic = Traffic(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.03})
    now = run_ticks(services, traffic, t0, 12, stop=lambda: rollouts.load(services, rollout_id).state != "progressing")
    r = rollouts.load(services, rollout_id)
    assert r.state == "rolled_back" and r.pending is None
    assert weights() == {"v41": 1.0, "v42": 0.0}

    [rollback] = [m for m in slack.thread("C0CHURN", parent) if m["text"].startswith(":rotating_light:")]
    assert rollback.get("reply_broadcast") is True  # the channel sees it, not only the thread
    assert "rolled back automatically" in rollback["text"] and "5XX rate 3.00% vs stable 0.40%" in rollback["text"]
    [page] = alerts(slack)
    assert "<@U0BOB>" in page["text"] and "churn" in page["text"]

    # Later passes leave a finished rollout alone: no second page, no more messages, no weight changes.
    before = len(slack.messages("C0CHURN"))
    run_ticks(services, traffic, now, 3)
    assert len(alerts(slack)) == 1 and len(slack.messages("C0CHURN")) == before
    assert weights() == {"v41": 1.0, "v42": 0.0}
    line = rollouts.rollout_summary(services, churn(services))
    assert "`v42` rolled back automatically" in line


def test_low_traffic_waits_and_never_rolls_back(services, slack, churn_endpoint, t0):
    rollout_id, parent = deploy(services, slack, t0)
    # 30 requests every 10 minutes. The candidate's first 3 include an error (33% against the stable's 0%):
    # a naive test would call that a regression; it is one error, and the judgement waits for evidence.
    now = t0
    for tick in range(11):  # 110 min: still within max_step_minutes
        put_traffic("churn-prod", "v41", now, 27, 0)
        put_traffic("churn-prod", "v42", now, 3, 1 if tick == 0 else 0)
        now += timedelta(minutes=10)
        rollout_controller.tick(services, now)
        deliver_all(services)
        r = rollouts.load(services, rollout_id)
        assert r.state == "progressing" and r.step_index == 0, tick
    assert weights() == {"v41": 0.9, "v42": 0.1}
    [step] = slack.thread("C0CHURN", parent)[1:]  # one message for the step, edited in place
    assert step["edits"] and "*Decision:* wait" in step["text"] and "fewer than 500 requests" in step["text"]

    for _ in range(2):  # past max_step_minutes, still far too few requests: a human is asked
        put_traffic("churn-prod", "v41", now, 27, 0)
        put_traffic("churn-prod", "v42", now, 3, 0)
        now += timedelta(minutes=10)
        rollout_controller.tick(services, now)
        deliver_all(services)
    r = rollouts.load(services, rollout_id)
    assert r.state == "paused" and weights() == {"v41": 0.9, "v42": 0.1}
    assert pages(slack) == []
    assert not any(m["text"].startswith(":rotating_light:") for m in slack.messages("C0CHURN"))
    [pause] = [m for m in slack.thread("C0CHURN", parent) if buttons(m)]
    assert set(buttons(pause)) == {"rollout_continue", "rollout_paused_rollback"}
    assert "<@U0ALICE>" in pause["text"] and "still undecided after 120 min at 10%" in pause["text"]


def test_pause_holds_the_split_and_resume_continues(services, slack, churn_endpoint, t0):
    rollout_id, parent = deploy(services, slack, t0)
    outcome = rollouts.pause(services, churn(services), user_id="U0ALICE", reason="checking dashboards",
                             now=t0 + timedelta(minutes=1))
    assert "Paused the rollout of *churn* at 10%" in outcome.text
    [pause] = [m for m in slack.thread("C0CHURN", parent) if buttons(m)]
    assert buttons(pause)["rollout_paused_rollback"]["confirm"]["style"] == "danger"

    good = Traffic(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.004})
    now = run_ticks(services, good, t0, 6)  # plenty of good evidence, but held
    assert rollouts.load(services, rollout_id).state == "paused" and weights() == {"v41": 0.9, "v42": 0.1}
    assert "paused at 10%" in rollouts.rollout_summary(services, churn(services))

    [old_step] = [m for m in slack.thread("C0CHURN", parent) if m["text"].startswith("*Step 1")]
    outcome = rollouts.resume(services, churn(services), user_id="U0ALICE", now=now)
    assert "Resumed" in outcome.text
    [closed] = [m for m in slack.thread("C0CHURN", parent) if m["ts"] == pause["ts"]]
    assert not buttons(closed) and "Continued by <@U0ALICE>" in closed["text"]  # no stale buttons
    # The step goes on in a fresh message at the bottom; the one above the pause says so.
    first, latest = [m for m in slack.thread("C0CHURN", parent) if m["text"].startswith("*Step 1")]
    assert first["ts"] == old_step["ts"] and "continues in a newer message below" in first["text"]
    assert rollouts.load(services, rollout_id).evidence_ts == latest["ts"]
    run_ticks(services, good, now, 1)  # the counts gathered while paused count: it shifts at once
    assert weights()["v42"] == 0.25


def test_a_paused_rollout_still_rolls_back_a_bad_candidate(services, slack, churn_endpoint, t0):
    rollout_id, parent = deploy(services, slack, t0)
    rollouts.pause(services, churn(services), user_id="U0ALICE", reason="weekend", now=t0)
    [pause] = [m for m in slack.thread("C0CHURN", parent) if buttons(m)]
    bad = Traffic(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.05})
    run_ticks(services, bad, t0, 6, stop=lambda: rollouts.load(services, rollout_id).state != "paused")
    assert rollouts.load(services, rollout_id).state == "rolled_back"
    assert weights() == {"v41": 1.0, "v42": 0.0} and len(alerts(slack)) == 1
    [closed] = [m for m in slack.messages("C0CHURN") if m["ts"] == pause["ts"]]
    assert not buttons(closed) and "Rolled back automatically" in closed["text"]  # no stale buttons


def test_forced_promotion_is_immediate_loud_and_then_bakes(services, slack, churn_endpoint, t0):
    rollout_id, parent = deploy(services, slack, t0)
    outcome = rollouts.force_promote(services, churn(services), user_id="U0ALICE", reason="hotfix for INC-7",
                                     now=t0 + timedelta(minutes=2))
    assert "Forced promotion of *churn*" in outcome.text
    assert weights() == {"v41": 0.0, "v42": 1.0}
    [loud] = [m for m in slack.thread("C0CHURN", parent) if "Forced promotion" in m["text"]]
    assert loud.get("reply_broadcast") is True and "<@U0ALICE>" in loud["text"] and "hotfix for INC-7" in loud["text"]
    [alert] = alerts(slack)
    assert "Forced promotion of churn" in alert["text"] and "<@U0ALICE>" in alert["text"]

    now = run_ticks(services, None, t0 + timedelta(minutes=2), 5)  # 50 min: still baking, v41 kept at 0%
    assert rollouts.load(services, rollout_id).state == "baking" and weights() == {"v41": 0.0, "v42": 1.0}
    run_ticks(services, None, now, 2)
    assert rollouts.load(services, rollout_id).state == "promoted" and weights() == {"v42": 1.0}


def test_rollback_by_hand_then_after_promotion_and_with_nothing_to_go_back_to(services, slack, churn_endpoint,
                                                                                t0, sagemaker_proxy):
    model = churn(services)
    rollout_id, parent = deploy(services, slack, t0)
    outcome = rollouts.rollback(services, model, user_id="U0ALICE", reason="latency <!channel>", now=t0)
    assert "back on `v41`" in outcome.text and weights() == {"v41": 1.0, "v42": 0.0}
    [page] = alerts(slack)
    assert "<@U0ALICE>" in page["text"] or "U0ALICE" in str(page.get("blocks"))
    line = rollouts.rollout_summary(services, model)
    assert "rolled back by <@U0ALICE>" in line and "&lt;!channel&gt;" in line and "<!channel>" not in line

    # A second rollout, forced through and baked: the endpoint no longer has v41 at all.
    second = rollouts.start_from_slack(services, model, user_id="U0ALICE", now=t0 + timedelta(minutes=5))
    rollouts.force_promote(services, model, user_id="U0ALICE", now=t0 + timedelta(minutes=6))
    run_ticks(services, None, t0 + timedelta(minutes=6), 7)
    assert rollouts.load(services, second.rollout_id).state == "promoted" and weights() == {"v42": 1.0}
    assert "Forced" not in rollouts.rollout_summary(services, model)

    # Rolling back now returns the endpoint to the config it had before that rollout (UpdateEndpoint).
    outcome = rollouts.rollback(services, model, user_id="U0ADMIN", reason="regression", now=t0 + timedelta(hours=2))
    assert "going back to `v41`" in outcome.text
    assert sagemaker_proxy.update_calls[-1]["EndpointConfigName"] == "churn-prod-config-1"
    assert weights() == {"v41": 1.0, "v42": 0.0}
    first_page, second_page = pages(slack)
    assert "<@U0ADMIN>" in second_page["text"] and "regression" in second_page["text"]
    # The first rollback's page was resolved when a later version of churn made it to production.
    assert first_page["text"].startswith(":white_check_mark:")

    outcome = rollouts.rollback(services, model, user_id="U0ADMIN", now=t0 + timedelta(hours=3))
    assert outcome.text.startswith("Nothing to roll back to") and "`v41` 100%" in outcome.text
    assert len(pages(slack)) == 2
