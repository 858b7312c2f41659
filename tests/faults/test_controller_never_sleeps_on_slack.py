"""Slack rate-limiting every call (429, Retry-After 20 s) while a worse candidate is judged: the worker's tick
rolls it back without sleeping through Retry-After; the messages wait in the outbox for the delivery job.

Before, the controller's tick used the shared WebClient, which sleeps Retry-After up to three times a call: a
tick that rolled back one rollout then spent a minute on its message before judging the next rollout.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from bot.rollouts import service as rollouts
from bot.slack import outbox
from bot.store.base import utcnow
from jobs import rollout_controller
from tests.rollout.conftest import Traffic, weights

BAD = dict(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.05})


@pytest.fixture
def services(make_services, rollout_aws):
    return make_services()


def test_a_rate_limited_slack_does_not_hold_the_controllers_tick(services, slack, churn_endpoint, t0):
    parent = services.slack.chat_postMessage(channel="C0CHURN", text="Run churn_lifecycle manual__1")["ts"]
    rollout_id = rollouts.start_from_deploy(services, "churn", endpoint="churn-prod", stable_variant="v41",
                                            candidate_variant="v42", run_id="manual__1", channel="C0CHURN",
                                            thread_ts=parent, now=t0)
    assert weights() == {"v41": 0.9, "v42": 0.1}
    slack.fail_randomly(1.0, statuses=(429,), retry_after=20)

    traffic, now, ticks = Traffic(**BAD), t0, []
    for _ in range(4):
        traffic.write(now, 10)
        now += timedelta(minutes=10)
        started = time.monotonic()
        rollout_controller.run_once(services, now)
        ticks.append(time.monotonic() - started)
        if rollouts.load(services, rollout_id).state == "rolled_back":
            break
    assert rollouts.load(services, rollout_id).state == "rolled_back"
    assert weights() == {"v41": 1.0, "v42": 0.0}
    assert max(ticks) < 10, ticks  # one Retry-After sleep alone would be 20 s

    slack.fail_randomly(0)
    outbox.deliver_due(services, now=utcnow() + timedelta(hours=1))
    rollback = [m for m in slack.thread("C0CHURN", parent) if m["text"].startswith(":rotating_light:")]
    assert len(rollback) == 1  # the owed message, delivered once Slack answers


def test_a_hung_sagemaker_cannot_stretch_a_tick_past_its_interval(services, slack, churn_endpoint, t0,
                                                                   sagemaker_proxy):
    """SageMaker answering after 12 s (past the controller's 5 s read timeout): the tick gives up within its
    deadline, the rollback stays owed, and the next tick, with SageMaker back, carries it out once."""
    parent = services.slack.chat_postMessage(channel="C0CHURN", text="Run churn_lifecycle manual__1")["ts"]
    rollout_id = rollouts.start_from_deploy(services, "churn", endpoint="churn-prod", stable_variant="v41",
                                            candidate_variant="v42", run_id="manual__1", channel="C0CHURN",
                                            thread_ts=parent, now=t0)
    traffic, now = Traffic(**BAD), t0
    for _ in range(3):
        traffic.write(now, 10)
        now += timedelta(minutes=10)
    sagemaker_proxy.latency = 12
    try:
        started = time.monotonic()
        rollout_controller.run_once(services, now)
        took = time.monotonic() - started
    finally:
        sagemaker_proxy.latency = 0
    r = rollouts.load(services, rollout_id)
    assert took < 30, took  # the default tick; the old clients took 5 tries of 13 s per call
    assert r.state == "rolled_back" and r.pending is not None  # decided and persisted; the weights are owed
    rollout_controller.run_once(services, now + timedelta(minutes=1))
    assert weights() == {"v41": 1.0, "v42": 0.0}
    assert rollouts.load(services, rollout_id).pending is None
