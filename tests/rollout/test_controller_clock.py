"""The controller's tick only moves traffic, on one clock, from complete data (issue 21, items 5, 6, 12, 13).

- A tick talks to neither Slack nor PagerDuty: starting a rollout, rolling one back and paging are traffic
  changes and rows; the delivery jobs say it all afterwards, once.
- CloudWatch data that is incomplete (a partial answer, a series missing for a minute) is not judged that tick,
  and /model status says so.
- A paused bake keeps its clock: resumed after bake_minutes, it retires at the next tick.
- Leases, outbox claims and a rollout's step start come from the database's clock, not the process's.

moto behind the UpdateEndpoint fake, the Slack emulator, a local PagerDuty; SQLite and PostgreSQL.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from bot.rollouts import service as rollouts
from bot.slack import outbox
from bot.store import base
from bot.store.foundation import acquire_lease
from jobs import rollout_controller
from sandbox.pagerduty import FakePagerDuty
from tests.endpoints import create_endpoint
from tests.rollout.conftest import Traffic, deliver_all, run_ticks, weights
from tests.rollout.test_scenarios import churn, deploy

BAD = dict(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.05})


@pytest.fixture
def pagerduty():
    fake = FakePagerDuty().start()
    yield fake
    fake.stop()


def test_a_tick_moves_traffic_and_says_nothing_itself(make_services, rollout_aws, slack, churn_endpoint, t0,
                                                      pagerduty):
    services = make_services(PAGERDUTY_ROUTING_KEY="R" * 32, PAGERDUTY_EVENTS_URL=pagerduty.url)
    churn_id, parent = deploy(services, slack, t0)
    # fraud: recorded from Slack while Slack did not answer, so its first step is the controller's to take.
    create_endpoint("fraud-prod", {"v1": 1.0, "v2": 0.0})
    fraud = services.registry.get("fraud")
    fraud_id = rollouts._new_rollout(services, fraud, source="slack", endpoint="fraud-prod", stable="v1",
                                     candidate="v2", run_key=None, started_by="U0CAROL", channel=None,
                                     thread_ts=None, previous_config="fraud-prod-config-1", now=t0)
    Traffic(**BAD).write(t0, 30)
    slack_calls, pd_calls = len(slack.calls), len(pagerduty.received)

    rollout_controller.tick(services, t0 + timedelta(minutes=30))
    assert rollouts.load(services, churn_id).state == "rolled_back" and weights() == {"v41": 1.0, "v42": 0.0}
    assert rollouts.load(services, fraud_id).state == "progressing"
    assert weights("fraud-prod") == {"v1": 0.9, "v2": 0.1}
    assert len(slack.calls) == slack_calls, [c.method for c in slack.calls[slack_calls:]]
    assert len(pagerduty.received) == pd_calls

    # The delivery jobs say it all, once: the rollback in its thread, fraud's new thread, the page.
    for later in (timedelta(0), timedelta(minutes=10)):
        deliver_all(services, later)
    rollback = [m for m in slack.thread("C0CHURN", parent) if m["text"].startswith(":rotating_light:")]
    assert len(rollback) == 1
    fraud_thread = rollouts.load(services, fraud_id)
    assert fraud_thread.thread_ts and any(
        m["text"].startswith("*Step 1 of") for m in slack.thread("C0FRAUD", fraud_thread.thread_ts))
    assert len([m for m in slack.messages("C0ALERTS") if "was rolled back" in m["text"]]) == 1
    assert [e["event_action"] for e in pagerduty.events] == ["trigger"]


class PartialCloudWatch:
    """CloudWatch answering with StatusCode PartialData (or dropping the error series) while `partial`."""

    def __init__(self, client, mode: str):
        self.client, self.mode = client, mode

    def get_metric_data(self, **kwargs):
        answer = self.client.get_metric_data(**kwargs)
        if self.mode == "partial":
            for series in answer["MetricDataResults"]:
                series["StatusCode"] = "PartialData"
        elif self.mode == "no errors series":
            ids = {q["Id"] for q in kwargs["MetricDataQueries"] if q["MetricStat"]["Metric"]["MetricName"]
                   == "Invocation5XXErrors"}
            for series in answer["MetricDataResults"]:
                if series["Id"] in ids:
                    series["Timestamps"], series["Values"] = [], []
        return answer

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.mark.parametrize("mode", ["partial", "no errors series"])
def test_incomplete_cloudwatch_data_is_not_judged_and_status_says_so(services, slack, churn_endpoint, t0,
                                                                     monkeypatch, mode):
    rollout_id, _ = deploy(services, slack, t0)
    Traffic(**BAD).write(t0, 30)
    clients = services.aws_clients
    real = clients.client

    def client(service, region, **kw):
        made = real(service, region, **kw)
        return PartialCloudWatch(made, mode) if service == "cloudwatch" else made

    with monkeypatch.context() as patched:
        patched.setattr(clients, "client", client)
        stats = rollout_controller.tick(services, t0 + timedelta(minutes=30))
    r = rollouts.load(services, rollout_id)
    assert r.state == "progressing" and weights() == {"v41": 0.9, "v42": 0.1}, "judged on incomplete data"
    assert stats.counts["not judged"] == 1
    line = rollouts.rollout_summary(services, churn(services))
    assert "not judged" in line and "incomplete" in line, line

    rollout_controller.tick(services, t0 + timedelta(minutes=31))
    assert rollouts.load(services, rollout_id).state == "rolled_back"


def test_a_paused_bake_keeps_its_clock_and_retires_at_the_next_tick_after_resume(services, slack, churn_endpoint,
                                                                                  t0):
    model = churn(services)
    rollout_id, parent = deploy(services, slack, t0)
    rollouts.force_promote(services, model, user_id="U0ALICE", reason="hotfix", now=t0)
    rollouts.pause(services, model, user_id="U0ALICE", reason="watching latency", now=t0 + timedelta(minutes=10))
    now = run_ticks(services, None, t0 + timedelta(minutes=10), 6)  # 70 minutes at 100%, paused
    r = rollouts.load(services, rollout_id)
    assert r.state == "paused" and weights() == {"v41": 0.0, "v42": 1.0}  # held: v41 kept for instant rollback
    line = rollouts.rollout_summary(services, model)
    assert "paused" in line and "baked" in line, line

    rollouts.resume(services, model, user_id="U0ALICE", now=now + timedelta(minutes=1))
    rollout_controller.tick(services, now + timedelta(minutes=2))
    assert rollouts.load(services, rollout_id).state == "promoted" and weights() == {"v42": 1.0}


def skew_process_clock(monkeypatch, offset: timedelta) -> None:
    """This process's clock runs `offset` ahead (an NTP-less VM): every module's utcnow() says so."""
    original = base.utcnow

    def skewed():
        return original() + offset

    for module in list(sys.modules.values()):
        if getattr(module, "utcnow", None) is original:
            monkeypatch.setattr(module, "utcnow", skewed)


def test_leases_claims_and_step_starts_use_the_databases_clock(make_services, rollout_aws, slack, churn_endpoint,
                                                                monkeypatch):
    services = make_services()
    with services.store.session() as s:
        assert acquire_lease(s, "rollout_controller", "worker-a", timedelta(seconds=30))
    with services.store.session() as s:  # outbox row claimed by worker-a a moment ago
        outbox.enqueue(s, key="test/1", subject="test:1", channel="C0CHURN", text="once")
    with services.store.session() as s:
        s.execute(update(outbox.OutboxMessage).where(outbox.OutboxMessage.key == "test/1")
                  .values(status=outbox.CLAIMED, claimed_by="worker-a", claimed_at=base.utcnow()))

    skew_process_clock(monkeypatch, timedelta(minutes=10))  # worker-b's clock is ten minutes ahead
    with services.store.session() as s:
        assert not acquire_lease(s, "rollout_controller", "worker-b", timedelta(seconds=30)), \
            "a live lease was taken over"
    stats = outbox.deliver_due(services)
    assert stats.delivered == 0 and slack.messages("C0CHURN") == [], "a live claim was taken over"

    before = datetime.now(timezone.utc)  # the real time: what the database's clock says
    outcome = rollouts.start_from_slack(services, churn(services), user_id="U0ALICE")
    started = rollouts.load(services, outcome.rollout_id).when("step_started_at")
    assert abs((started - before).total_seconds()) < 60, f"step started at {started}, the database says {before}"
