"""Slack stalls (every call times out) from a rollout's 50% step on, and the candidate turns bad: the worker rolls
it back and PagerDuty has the page within two controller ticks, while nothing reaches Slack. When Slack answers
again, the page's alert and the thread's rollback message go out, once each.

`python -m jobs` as a real process (its Slack client's own 10 s timeout), Slack behind a proxy that holds every
request unanswered, the local PagerDuty, moto behind the UpdateEndpoint fake; PostgreSQL when TEST_DATABASE_URL
is set (as CI runs it), else SQLite.

Before issue 21 the page was an outbox row behind the rollout's older Slack messages, and the PagerDuty trigger
was sent only when that row was delivered: nobody was paged until Slack recovered.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from bot.config import Settings
from bot.integrations.cloudwatch import first_full_minute
from bot.rollouts import executor
from bot.rollouts import service as rollouts
from bot.rollouts.plans import plan_enter_step
from bot.rollouts.states import Event
from bot.services import Services
from sandbox.pagerduty import FakePagerDuty
from tests.conftest import POSTGRES_URL, provision_database
from tests.endpoints import create_endpoint
from tests.faults.conftest import WorkerProcess, put_traffic, utc_now, weights
from tests.harness import BOT_TOKEN, SIGNING_SECRET, app_env, wait_until

pytestmark = pytest.mark.e2e

TICK = 3.0  # seconds; a machine shared with other test runs still ticks on time
ROUTING_KEY = "R0UTINGKEY0123456789abcdef012345"


@pytest.fixture
def database(tmp_path):
    url, cleanup = provision_database("postgresql" if POSTGRES_URL else "sqlite", tmp_path)
    yield url
    cleanup()


@pytest.fixture
def pagerduty():
    fake = FakePagerDuty().start()
    yield fake
    fake.stop()


def test_pagerduty_has_the_page_within_two_ticks_while_slack_stalls(tmp_path, moto_url, slack, hanging_slack,
                                                                    sagemaker_proxy, rollout_aws, models_file,
                                                                    database, pagerduty):
    create_endpoint("churn-prod", {"v41": 1.0, "v42": 0.0})
    services = Services.from_settings(Settings(
        _env_file=None, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_APP_TOKEN=None,
        SLACK_API_URL=slack.api_url, DATABASE_URL=database, MODELS_FILE=str(models_file), AIRFLOW_URL=None,
        PAGERDUTY_ROUTING_KEY=None), migrate=True)
    worker = WorkerProcess(app_env(
        slack=slack, moto_url=moto_url, database_url=database, models_file=models_file,
        SLACK_API_URL=hanging_slack.api_url, AWS_ENDPOINT_URL_SAGEMAKER=sagemaker_proxy.url,
        PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=pagerduty.url,
        MODELBOT_ROLLOUT_TICK_SECONDS=str(TICK), MODELBOT_JOB_INTERVAL_SECONDS="1", MODELBOT_JOB_LEASE_SECONDS="10",
    ), tmp_path / "worker.log")
    try:
        # The rollout has walked to its 50% step (ten minutes ago); Slack answered until that step, whose
        # messages are still owed.
        parent = slack.add_message("C0CHURN", "Run churn_lifecycle deploy-1", user="U0MODELBOT")
        began = utc_now() - timedelta(minutes=20)
        rollout_id = rollouts.start_from_deploy(services, "churn", endpoint="churn-prod", stable_variant="v41",
                                                candidate_variant="v42", run_id="deploy-1", channel="C0CHURN",
                                                thread_ts=parent, now=began)
        settings = services.registry.get("churn").rollout
        step_start = utc_now() - timedelta(minutes=10)
        said = len(slack.thread("C0CHURN", parent))
        executor.transition(services, rollout_id, lambda r: plan_enter_step(r, settings, 2, step_start,
                                                                             kind=Event.SHIFT), carry=False)
        executor.carry_out(services, rollout_id, deliver=False)
        assert weights() == {"v41": 0.5, "v42": 0.5}

        # From now on Slack stalls; the candidate is clearly worse over the step's whole minutes.
        hanging_slack.hang()
        minute = first_full_minute(step_start)
        while minute + timedelta(minutes=1) <= utc_now():
            put_traffic("churn-prod", "v41", minute, 5_000, errors_5xx=20)
            put_traffic("churn-prod", "v42", minute, 5_000, errors_5xx=1_500)
            minute += timedelta(minutes=1)

        worker.start()
        wait_until(lambda: weights() == {"v41": 1.0, "v42": 0.0}, timeout=180, interval=0.05,
                   message=f"the rollback\n{worker.log()[-3000:]}")
        rolled_back = time.monotonic()
        wait_until(lambda: pagerduty.events, timeout=4 * TICK + 30, interval=0.05,
                   message=f"the PagerDuty trigger\n{worker.log()[-3000:]}")
        took = time.monotonic() - rolled_back
        [trigger] = pagerduty.events
        assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == f"modelbot-rollout-{rollout_id}"
        assert took <= 2 * TICK, f"PagerDuty had the page {took:.1f}s after the rollback, more than two ticks"
        # The worker's other jobs are stuck on Slack meanwhile, and nothing has reached it.
        wait_until(lambda: hanging_slack.held > 0, timeout=120, interval=0.1,
                   message=f"the worker calling the stalled Slack\n{worker.log()[-3000:]}")
        assert slack.messages("C0ALERTS") == [] and len(slack.thread("C0CHURN", parent)) == said

        # Slack answers again: the page's alert, the 50% step and the rollback message go out, once each.
        hanging_slack.release()
        wait_until(lambda: [m for m in slack.messages("C0ALERTS") if "was rolled back" in m["text"]],
                   timeout=120, interval=0.2, message=f"the page in Slack\n{worker.log()[-3000:]}")
        wait_until(lambda: [m for m in slack.thread("C0CHURN", parent) if m["text"].startswith(":rotating_light:")],
                   timeout=60, interval=0.2, message=f"the rollback in the thread\n{worker.log()[-3000:]}")
        time.sleep(3 * TICK)  # anything sent twice would have arrived by now
        assert len([m for m in slack.messages("C0ALERTS") if m.get("thread_ts") in (None, m["ts"])]) == 1
        assert len([m for m in slack.thread("C0CHURN", parent) if m["text"].startswith(":rotating_light:")]) == 1
        assert len([m for m in slack.thread("C0CHURN", parent) if m["text"].startswith("*Step 3 of 3")]) == 1
        assert [e["event_action"] for e in pagerduty.events] == ["trigger"]
        print(f"PagerDuty had the page {took:.2f}s after the rollback (tick {TICK}s) while Slack stalled")
    finally:
        worker.stop()
        services.store.dispose()
