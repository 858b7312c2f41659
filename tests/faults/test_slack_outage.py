"""Slack down while a worse candidate serves 10% of a paused rollout: the rollback does not wait for Slack.

End to end in process: moto (behind the UpdateEndpoint fake) for SageMaker and CloudWatch, the Slack emulator
answering 503 to every Web API call, the real controller tick and judgement, SQLite and PostgreSQL.

The old design kept the pause's intent pending while its messages could not be posted, and judged only
rollouts with no pending intent: the candidate kept its 10% for as long as Slack was down. Now the pause's
traffic part is done at once and its messages wait in the outbox; the controller judges the paused rollout
on every tick and rolls it back while Slack is still down. When Slack answers again, the outbox delivers the
owed messages and the pager its page, each exactly once.
"""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest

from bot.paging import service as pager
from bot.rollouts import service as rollouts
from bot.store.base import utcnow
from jobs import rollout_controller
from tests.rollout.conftest import Traffic, weights

BAD = dict(per_minute=20_000, rate_5xx={"v41": 0.004, "v42": 0.05})


@pytest.fixture
def services(make_services, rollout_aws):
    return make_services()


def thread(slack, parent: str) -> list[dict]:
    return slack.thread("C0CHURN", parent)


def pages(slack) -> list[dict]:
    return [m for m in slack.messages("C0ALERTS") if "was rolled back" in m["text"]]


def deliver_owed(services, rollout_id: int, later: timedelta) -> None:
    """One pass of the worker's delivery work, `later` after now (every back-off has run out by then): the
    Slack outbox, then what the pager owes for the rollout's page."""
    outbox = importlib.import_module("bot.slack.outbox")  # here, so this file loads on the old design too
    outbox.deliver_due(services, now=utcnow() + later)
    page = pager.page_for_rollout(services, rollout_id)
    if page is not None:
        pager.deliver(services, page.id)


def test_slack_down_during_a_paused_rollout_still_rolls_back_then_tells_once(services, slack, churn_endpoint, t0):
    parent = services.slack.chat_postMessage(channel="C0CHURN", text="Run churn_lifecycle manual__1")["ts"]
    rollout_id = rollouts.start_from_deploy(services, "churn", endpoint="churn-prod", stable_variant="v41",
                                            candidate_variant="v42", run_id="manual__1", channel="C0CHURN",
                                            thread_ts=parent, now=t0)
    assert weights() == {"v41": 0.9, "v42": 0.1}
    said_before = len(thread(slack, parent))

    # Slack's Web API answers 503 to everything from now on; the owner pauses the rollout.
    slack.fail_randomly(1.0, statuses=(503,))
    outcome = rollouts.pause(services, services.registry.get("churn"), user_id="U0ALICE", reason="checking a dashboard",
                             now=t0 + timedelta(minutes=1))
    assert outcome.changed and rollouts.load(services, rollout_id).state == "paused"

    # The candidate is clearly worse. Within a few ticks it is off traffic, though Slack is still down.
    traffic = Traffic(**BAD)
    now = t0 + timedelta(minutes=1)
    for _ in range(4):
        traffic.write(now, 10)
        now += timedelta(minutes=10)
        rollout_controller.tick(services, now)
        if rollouts.load(services, rollout_id).state == "rolled_back":
            break
    r = rollouts.load(services, rollout_id)
    assert r.state == "rolled_back" and r.pending is None, (r.state, r.pending, r.last_error)
    assert weights() == {"v41": 1.0, "v42": 0.0}  # on the moto endpoint, while Slack is down
    assert len(thread(slack, parent)) == said_before and pages(slack) == []  # nothing could be said yet

    # Later ticks while Slack stays down change nothing more.
    rollout_controller.tick(services, now + timedelta(minutes=10))
    assert weights() == {"v41": 1.0, "v42": 0.0}

    # Slack answers again: the owed messages and the page go out, each once, however often delivery runs.
    slack.fail_randomly(0)
    for later in (timedelta(hours=1), timedelta(hours=2)):
        deliver_owed(services, rollout_id, later)
        rollout_controller.tick(services, now + later)
    said = thread(slack, parent)[said_before:]
    rollback = [m for m in said if m["text"].startswith(":rotating_light:")]
    paused = [m for m in said if "checking a dashboard" in m["text"]]
    assert len(rollback) == 1 and rollback[0].get("reply_broadcast") is True
    assert "rolled back automatically" in rollback[0]["text"]
    assert len(paused) == 1  # the pause's own message, late but once
    [page] = pages(slack)
    assert "<@U0BOB>" in page["text"] and "churn" in page["text"]
    keys = [((m.get("metadata") or {}).get("event_payload") or {}).get("key") for m in said]
    assert len([k for k in keys if k]) == len({k for k in keys if k})  # no message posted twice
    assert weights() == {"v41": 1.0, "v42": 0.0}
